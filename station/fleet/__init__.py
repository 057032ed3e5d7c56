"""Many stations: the object store, the archiver, central sync, the cross-station repacks."""
