"""Built-in node handlers: one module per node type, named as the type, each registering itself
on import. The registry imports a module the first time a diagram uses its type
(`dipeo_cli.registry.BUILTIN_TYPES`)."""
