"""pyinfra facts of tfenv: few and wide, one round trip each."""
