"""pyinfra reads this file before it connects to any host (run pyinfra from here).

tfenv uses it to validate the whole inventory first: bad declared data stops
the run with one message per problem and no SSH connection made.
"""

from pyinfra import state

from tfenv.pyinfra_hooks import install

install(state)
