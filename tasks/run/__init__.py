"""What one run is made of: the run manifest (its record), the typed step outputs passed between stages,
and the run key with the deterministic resource names derived from it."""
