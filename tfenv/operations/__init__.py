"""pyinfra operations of tfenv (one module per resource kind)."""
