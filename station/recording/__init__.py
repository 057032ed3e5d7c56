"""A scan becomes a clip: the order state machine, capture loop, overlay, encoder, recorder."""
