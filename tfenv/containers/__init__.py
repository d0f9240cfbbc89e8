"""tfenv's containers: the declared spec for Docker, and drift against ``docker inspect``."""
