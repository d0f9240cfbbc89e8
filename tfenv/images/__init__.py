"""Image references, the image lock file, and (later) the registry client."""
