"""Payment providers: one module per provider, each the only importer of its SDK."""
