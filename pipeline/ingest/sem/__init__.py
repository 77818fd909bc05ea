"""SEM image readers, one module per vendor, on tifffile; data-bar handling."""
