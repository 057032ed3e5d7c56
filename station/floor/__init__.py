"""Around the packing table: station events, sounds, the screen, webhooks, lookup, alarms."""
