"""Cost rollups and alerts."""
