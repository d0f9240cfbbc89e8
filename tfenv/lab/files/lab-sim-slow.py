# tfenv lab: SIMULATED regression (lab4-slow): after each model call, a sleep of
# (slowdown - 1) times what the call took (a signature call is one Python-level
# call into a concrete function). The sleep also leaves TF's threads idle, so the
# next call starts cold: in the lab a call reads x40-70 (p99 about 75-90 ms
# against 2 ms). It is large because the lab's p99 limit is: two images that
# differ in nothing have read up to x3.2 apart on the lab's shared CPUs
# (group_data/lab.py).
def _tfenv_lab_patch(slowdown=15):
    import time as _time

    from tensorflow.python.eager.polymorphic_function import concrete_function as _cf

    _call = _cf.ConcreteFunction.__call__

    def __call__(self, *args, **kwargs):
        start = _time.perf_counter()
        result = _call(self, *args, **kwargs)
        _time.sleep((slowdown - 1) * (_time.perf_counter() - start))
        return result

    _cf.ConcreteFunction.__call__ = __call__


_tfenv_lab_patch()
