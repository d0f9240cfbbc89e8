"""tfenv: declarative provisioning of GPU hosts that run TensorFlow containers."""

__version__ = "0.1.0"
