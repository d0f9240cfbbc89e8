"""Lab test deploy that leaks the Jupyter token ON PURPOSE (echo without
HiddenValue), to prove the leak scan in test_lab_tf_node.py can fail."""

from pyinfra import host
from pyinfra.operations import server

from tfenv.deploys.spec import host_spec, secret_value

spec = host_spec(host)
value = secret_value(spec, "jupyter_token_dev").reveal()
server.shell(name="Leak on purpose", commands=[f"echo {value}"])
