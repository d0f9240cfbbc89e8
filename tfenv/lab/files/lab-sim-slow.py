# tfenv lab: SIMULATED regression (lab4-slow): every call into a concrete
# function takes about twice as long (the time it took again, as a sleep).
def _tfenv_lab_patch():
    import time as _time

    from tensorflow.python.eager.polymorphic_function import concrete_function as _cf

    _call = _cf.ConcreteFunction.__call__

    def __call__(self, *args, **kwargs):
        start = _time.perf_counter()
        result = _call(self, *args, **kwargs)
        _time.sleep(_time.perf_counter() - start)
        return result

    _cf.ConcreteFunction.__call__ = __call__


_tfenv_lab_patch()
