"""The fleet's central side: PostgreSQL index of every station's clips, station registry, API."""
