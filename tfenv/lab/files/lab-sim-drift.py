# tfenv lab: SIMULATED numerics change (lab5-drift): every SavedModel loaded
# through tf.saved_model.load has its float variables scaled by 1.5, so the
# model's outputs shift (no cost per call: only its numbers differ).
def _tfenv_lab_patch():
    from tensorflow._api.v2 import saved_model as _saved_model

    _load = _saved_model.load

    def load(*args, **kwargs):
        model = _load(*args, **kwargs)
        found = {}
        for function in getattr(model, "signatures", {}).values():
            found.update((id(v), v) for v in function.variables)
        for variable in found.values():
            if variable.dtype.is_floating:
                variable.assign(variable * 1.5)
        return model

    _saved_model.load = load


_tfenv_lab_patch()
