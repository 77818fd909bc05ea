"""Segmentation: phases, particles and their size distribution, pores, protrusions."""
