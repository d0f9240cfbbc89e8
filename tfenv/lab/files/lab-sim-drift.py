# tfenv lab: SIMULATED numerics change (lab5-drift): every concrete function's
# outputs come back shifted by one position along their last axis.
def _tfenv_lab_patch():
    from tensorflow.python.eager.polymorphic_function import concrete_function as _cf
    from tensorflow.python.ops import manip_ops as _manip
    from tensorflow.python.util import nest as _nest

    _call = _cf.ConcreteFunction.__call__

    def __call__(self, *args, **kwargs):
        return _nest.map_structure(lambda t: _manip.roll(t, 1, -1), _call(self, *args, **kwargs))

    _cf.ConcreteFunction.__call__ = __call__


_tfenv_lab_patch()
