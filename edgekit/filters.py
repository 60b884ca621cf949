"""Signal-level preprocessing chosen at training time: IIR filter design (scipy, compile side only), detrending
and resampling. The designed filter is stored as second-order sections in preprocess.json, so the board runs it
with the runtime's numba kernel and needs no scipy."""

from __future__ import annotations

from dataclasses import asdict

from edgekit_runtime.errors import UserError


def design_filter(kind: str, cutoff_hz: tuple[float, ...], rate: float, order: int = 4):
    """A Butterworth high-pass (one cutoff) or band-pass (two cutoffs) filter as second-order sections."""
    import scipy.signal

    from edgekit_runtime.iir import IIRFilter

    nyquist = rate / 2
    if order < 1:
        raise UserError(f"--filter-order must be at least 1, got {order}")
    if not all(0 < c < nyquist for c in cutoff_hz) or list(cutoff_hz) != sorted(set(cutoff_hz)):
        raise UserError(f"{kind} cutoff(s) {', '.join(f'{c:g}' for c in cutoff_hz)} Hz must be increasing and "
                        f"between 0 and the Nyquist frequency ({nyquist:g} Hz at {rate:g} Hz sampling)")
    sos = scipy.signal.butter(order, cutoff_hz if len(cutoff_hz) > 1 else cutoff_hz[0], btype=kind, fs=rate,
                              output="sos")
    return IIRFilter(sos, scipy.signal.sosfilt_zi(sos), kind, tuple(float(c) for c in cutoff_hz), order)


def signal_steps(options, rate: float) -> dict:
    """`Preprocessing` keyword arguments (detrend, filter, max_gap) from a SignalSettings (or a dict of its
    fields)."""
    options = options if isinstance(options, dict) else asdict(options)
    highpass, bandpass = options.get("highpass"), options.get("bandpass")
    if highpass is not None and bandpass is not None:
        raise UserError("give --highpass or --bandpass, not both")
    order = 4 if options.get("filter_order") is None else options["filter_order"]
    filt = None
    if highpass is not None:
        filt = design_filter("highpass", (highpass,), rate, order)
    elif bandpass is not None:
        try:
            lo, hi = (float(v) for v in bandpass.split(","))
        except ValueError:
            raise UserError(f"--bandpass takes LOW,HIGH in Hz, got {bandpass!r}") from None
        filt = design_filter("bandpass", (lo, hi), rate, order)
    return {"detrend": options.get("detrend") or "none", "filter": filt, "max_gap": options.get("max_gap")}


def signal_spec(steps: dict, rate: float) -> dict | None:
    """The recording-level steps of `signal_steps` (filter, resampling) as a data spec's "signal" entry, with
    which the data layer cuts recordings into the windows `edgekit run` computes (data.load_table); None when
    there are none."""
    if steps["filter"] is None and steps["max_gap"] is None:
        return None
    return {"sampling_rate": float(rate), "max_gap": steps["max_gap"],
            "filter": steps["filter"].to_json() if steps["filter"] is not None else None}


def with_signal(spec: dict, rate: float, signal=None) -> tuple[dict, dict]:
    """(spec, steps): the signal-level steps of `signal` (SignalSettings or a dict of its fields) for data sampled
    at `rate`, and the spec that loads the recordings filtered and resampled whole, then cut, as `edgekit run`
    does; every later stage reloads these windows from it. A bundled benchmark's spec is returned as it is: its
    cases are filtered each on its own when prepared (data.model_inputs)."""
    from .data import bundled_name

    steps = signal_steps(signal or {}, rate)
    recording = signal_spec(steps, rate)
    if recording is not None and bundled_name(spec["dataset"]) is None:
        spec = {**spec, "signal": recording}
    return spec, steps


def filtered_splits(spec: dict, split, seed: int, signal=None):
    """`data.labelled_splits` after the signal-level steps of `signal` (`with_signal`): (dataset, spec, train, val,
    test, steps)."""
    from .data import labelled_splits

    ds, spec, tr, va, te = labelled_splits(spec, split, seed)
    filtered, steps = with_signal(spec, ds.sampling_rate, signal)
    if filtered is not spec:
        ds, spec, tr, va, te = labelled_splits(filtered, split, seed)
    return ds, spec, tr, va, te, steps
