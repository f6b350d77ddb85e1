"""Data in: readers, the simulator, quality control and normalisation, masks, the gene layout."""
