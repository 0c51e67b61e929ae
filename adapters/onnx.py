"""ONNX Runtime adapter: audit an exported model as a black box.

    target = OnnxTarget("model.onnx", batch_size=2048)
    probs = target.predict_proba(x)

The target finds the class-score output itself, as exported by torch.onnx, skl2onnx, onnxmltools
(LightGBM, XGBoost) or a Hugging Face text classifier:

- int64 label outputs are skipped; a ZipMap ``seq(map(int64|string, float))`` is read from the
  tensor it wraps (the graph is rewired to return it), so columns follow the model's class order;
- among several float outputs, the one named like logits, then probabilities, is used; otherwise
  the target refuses and names the outputs and the ``output`` option (CLI ``--output``);
- logits vs probabilities comes from the graph (a Softmax/Sigmoid producing the output) or from a
  probe batch (non-negative rows summing to 1); ``scores`` (CLI ``--scores``) forces it;
- a ``(N, 1)`` or ``(N,)`` head is binary: a logit z becomes the columns (0, z), a probability p
  becomes (1 - p, p);
- a fixed batch dimension (1 or N) is fed exactly that many rows (the last chunk padded), each
  input gets its own dtype from the graph, and several named inputs (``input_ids``,
  ``attention_mask``, ``token_type_ids``) are fed from named inputs (``audit_sdk.data.pack_inputs``);
  a missing ``token_type_ids`` is zeros and a missing ``attention_mask`` is ``input_ids != pad_token_id``
  when ``pad_token_id`` is given.

``OnnxTarget.model_family`` says what kind of graph it is (``tree-ensemble`` for ai.onnx.ml
TreeEnsemble* ops, ``linear``, ``svm``, ``neural-network``), so reference attacks can train
references of the same family.

CUDA is used only when its provider really loads (probed once per process with onnxruntime's
logging silenced); otherwise the CPU provider runs with no provider-failure noise in the log.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from audit_sdk import hookimpl
from audit_sdk.data import pack_inputs
from audit_sdk.errors import BackendUnavailableError, InvalidDataError, InvalidModelError, InvalidParameterError
from audit_sdk.target import Target

__all__ = ["OnnxTarget", "OutputSelectionError", "available_providers", "graph_summary"]

_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(bool)": np.bool_,
}

#: ops a class score may pass through unchanged on its way to a graph output
_PASS_THROUGH = {"Identity", "Cast", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "ZipMap"}
_PROBE_ROWS = 32


class OutputSelectionError(InvalidModelError):
    """The target cannot be sure which output holds the class scores, or how to read it.

    ``details`` holds the graph's inputs and outputs, so ``audit-sdk inspect`` can print them.
    """

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


@dataclass
class _Graph:
    """What the target needs from the graph itself (read with onnx, weights not loaded)."""

    ops: frozenset[str] = frozenset()
    producer: dict[str, tuple[str, list[str], dict[str, Any]]] = field(default_factory=dict)
    model: Any = None

    def source_op(self, name: str) -> str | None:
        """The first op, walking back from ``name`` through shape-only ops, that computes it."""
        seen = 0
        while name in self.producer and seen < 32:
            op, inputs, _ = self.producer[name]
            if op not in _PASS_THROUGH or not inputs:
                return op
            name, seen = inputs[0], seen + 1
        return None

    def class_labels(self) -> list[Any] | None:
        for op, _, attrs in self.producer.values():
            if op in ("ZipMap",) or op.endswith("Classifier"):
                for key in ("classlabels_int64s", "classlabels_ints", "classlabels_strings"):
                    if attrs.get(key):
                        return list(attrs[key])
        return None


def _read_graph(path: Path) -> _Graph:
    try:
        import onnx
        from onnx import helper
    except ImportError:  # onnxruntime alone: no graph analysis, probing still works
        return _Graph()
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:
        return _Graph()
    producer: dict[str, tuple[str, list[str], dict[str, Any]]] = {}
    ops = set()
    for node in model.graph.node:
        ops.add(f"{node.domain or 'ai.onnx'}:{node.op_type}")
        attrs = {}
        if node.domain == "ai.onnx.ml":
            for a in node.attribute:
                if a.name.startswith("classlabels") or a.name == "post_transform":
                    v = helper.get_attribute_value(a)
                    attrs[a.name] = [x.decode() if isinstance(x, bytes) else x for x in v] if isinstance(v, list) else v
        for out in node.output:
            producer[out] = (node.op_type, list(node.input), attrs)
    return _Graph(ops=frozenset(ops), producer=producer, model=model)


def graph_family(ops: frozenset[str] | set[str]) -> str:
    """The model family of a graph from its op types: tree-ensemble, linear, svm or neural-network."""
    ml = {o.split(":", 1)[1] for o in ops if o.startswith("ai.onnx.ml:")}
    if any(o.startswith("TreeEnsemble") for o in ml):
        return "tree-ensemble"
    if ml & {"SVMClassifier", "SVMRegressor"}:
        return "svm"
    if ml & {"LinearClassifier", "LinearRegressor"}:
        return "linear"
    return "neural-network" if ops else "unknown"


def _shape(dims: Any) -> list[Any]:
    return [d if isinstance(d, int) else (d or "?") for d in (dims or [])]


def graph_summary(session: Any) -> dict[str, Any]:
    """The inputs and outputs of an onnxruntime session as JSON-able lists (name, type, shape)."""
    return {
        "inputs": [{"name": i.name, "type": i.type, "shape": _shape(i.shape)} for i in session.get_inputs()],
        "outputs": [{"name": o.name, "type": o.type, "shape": _shape(o.shape)} for o in session.get_outputs()],
    }


def _name_rank(name: str) -> int | None:
    n = name.lower()
    if "logit" in n:
        return 0
    if "prob" in n:
        return 1
    if "score" in n:
        return 2
    return None


def _ort() -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendUnavailableError('ONNX models need onnxruntime: pip install "audit-sdk[onnx]".') from exc
    return ort


@functools.lru_cache(maxsize=1)
def session_setup(device: str, intra_op_threads: int = 0) -> tuple[list[str], Any]:
    """Execution providers for ``device`` ("auto", "cpu" or "cuda") and quiet SessionOptions (both ONNX targets use it).

    Raises:
        BackendUnavailableError: ``device="cuda"`` where the CUDA provider cannot load.
    """
    ort = _ort()
    providers = list(available_providers())
    if device == "cpu":
        providers = ["CPUExecutionProvider"]
    elif device == "cuda" and "CUDAExecutionProvider" not in providers:
        raise BackendUnavailableError("device='cuda' but the CUDA execution provider cannot load here; use device='auto' or 'cpu'.")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if intra_op_threads:
        so.intra_op_num_threads = intra_op_threads
    return providers, so


def available_providers() -> tuple[str, ...]:
    """Execution providers that really work here: CUDA only if a session can be created on it.

    onnxruntime-gpu lists CUDAExecutionProvider even without a GPU and then logs an error when it
    fails to load; we probe once, silently, on a one-node graph.
    """
    ort = _ort()
    listed = ort.get_available_providers()
    if "CUDAExecutionProvider" not in listed:
        return ("CPUExecutionProvider",)
    try:
        import ctypes.util

        if ctypes.util.find_library("cuda") is None and not Path("/dev/nvidia0").exists():
            return ("CPUExecutionProvider",)
        from onnx import TensorProto, helper

        node = helper.make_node("Identity", ["x"], ["y"])
        graph = helper.make_graph(
            [node],
            "probe",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        so = ort.SessionOptions()
        so.log_severity_level = 4
        prev = 2
        ort.set_default_logger_severity(4)
        try:
            sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
            ok = "CUDAExecutionProvider" in sess.get_providers()
        finally:
            ort.set_default_logger_severity(prev)
        return ("CUDAExecutionProvider", "CPUExecutionProvider") if ok else ("CPUExecutionProvider",)
    except Exception:  # any failure to load CUDA means CPU, silently
        return ("CPUExecutionProvider",)


class OnnxTarget(Target):
    """A classifier exported to ONNX, queried through an onnxruntime InferenceSession.

        target = OnnxTarget("model.onnx")            # output and scores found from the graph
        target = OnnxTarget("bert.onnx", pad_token_id=0)
        target.predict_proba({"input_ids": ids})     # attention_mask = ids != 0, token_type_ids = 0

    Args:
        path: the ``.onnx`` file.
        batch_size: inputs per ``session.run`` (a graph with a fixed batch dimension gets exactly
            that many rows per run instead).
        output: the graph output (name, or index) that holds the class scores (None: found from
            the graph; see the module docstring).
        scores: ``"logits"``, ``"probabilities"`` or ``"auto"`` (from the graph or a probe batch).
        label_classes: number of classes the audit labels span; an automatically chosen output
            wider than that, and not named like class scores nor read from a classifier node, is
            refused (it may be an embedding), naming ``output``.
        pad_token_id: the padding token id; lets a missing ``attention_mask`` be built from the ids.
        device: ``"auto"`` (CUDA when it really loads), ``"cpu"`` or ``"cuda"``.
        intra_op_threads: onnxruntime threads (0: its default).
        io_binding: run through an ``IOBinding`` (inputs copied to the device once per batch,
            outputs allocated there; None: only when the session runs on CUDA, where it saves
            onnxruntime's per-call staging copies). Same numbers either way.
        outputs, output_index: older spellings of ``scores`` and ``output``.

    Raises:
        InvalidModelError: the file is missing or is not a valid ONNX model.
        OutputSelectionError: the class-score output, or whether it holds logits or
            probabilities, cannot be told for sure; the message names the outputs and the option.
    """

    capabilities = frozenset({"labels", "probabilities", "logits"})

    def __init__(
        self,
        path: str | Path,
        *,
        batch_size: int = 1024,
        output: str | int | None = None,
        scores: Literal["auto", "logits", "probabilities"] | None = None,
        label_classes: int | None = None,
        pad_token_id: int | None = None,
        device: Literal["auto", "cpu", "cuda"] = "auto",
        intra_op_threads: int = 0,
        io_binding: bool | None = None,
        outputs: Literal["auto", "logits", "probabilities"] | None = None,
        output_index: int | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InvalidModelError(f"ONNX model {str(self.path)!r} does not exist; pass the path to an exported .onnx file.")
        if batch_size < 1:
            raise InvalidParameterError(f"batch_size must be >= 1; got {batch_size}.")
        mode = scores or outputs or "auto"
        if mode not in ("auto", "logits", "probabilities"):
            raise InvalidParameterError(f"scores must be 'auto', 'logits' or 'probabilities'; got {mode!r}.")
        if output is None and output_index is not None:
            output = int(output_index)
        if pad_token_id is not None and (isinstance(pad_token_id, bool) or not isinstance(pad_token_id, (int, np.integer))):
            raise InvalidParameterError(f"pad_token_id must be an integer token id; got {pad_token_id!r}.")
        self._providers_wanted, self._so = session_setup(device, intra_op_threads)
        self.session = self._open(str(self.path))
        self.graph = _read_graph(self.path)
        self.pad_token_id = None if pad_token_id is None else int(pad_token_id)
        self.providers = tuple(self.session.get_providers())
        self._device_type = "cuda" if self.providers[0] == "CUDAExecutionProvider" else "cpu"
        self.io_binding = (self._device_type == "cuda") if io_binding is None else bool(io_binding)
        self._summary = graph_summary(self.session)
        self._read_inputs()
        self.batch_size = self.fixed_batch or int(batch_size)
        self._select_output(output, mode, label_classes)
        self.graph.model = None  # the parsed graph (weights included) is only needed to choose the output

    # ----------------------------------------------------------------- setup
    def _open(self, source: str | bytes) -> Any:
        ort = _ort()
        try:
            return ort.InferenceSession(source, self._so, providers=self._providers_wanted)
        except Exception as exc:
            raise InvalidModelError(
                f"{self.path} is not a loadable ONNX model ({type(exc).__name__}: {str(exc).strip()[:200]}). "
                "Re-export it (audit_sdk.adapters.torch.export_onnx) or check the file is not truncated."
            ) from exc

    def _fail(self, message: str) -> OutputSelectionError:
        return OutputSelectionError(message, details=self._summary)

    def _read_inputs(self) -> None:
        inputs = self.session.get_inputs()
        bad = [f"{i.name} ({i.type})" for i in inputs if i.type not in _ORT_TYPES]
        if bad:
            raise InvalidModelError(f"{self.path}: input type of {', '.join(bad)} is not supported; expected float or integer tensors.")
        self._inputs = {i.name: np.dtype(_ORT_TYPES[i.type]) for i in inputs}
        self._input_dims = {i.name: tuple(d if isinstance(d, int) and d > 0 else None for d in (i.shape or [None])[1:]) for i in inputs}
        batch = {i.name: i.shape[0] for i in inputs if i.shape and isinstance(i.shape[0], int) and i.shape[0] > 0}
        if len(set(batch.values())) > 1:
            raise InvalidModelError(f"{self.path}: inputs have different fixed batch sizes {batch}; expected one batch axis.")
        self.fixed_batch: int | None = next(iter(batch.values())) if batch else None
        if len(inputs) == 1:
            self.input_name = inputs[0].name
            self.input_names = None
            self.input_dtype = self._inputs[self.input_name]
            self.input_shape = self._input_dims[self.input_name]
        else:
            self.input_name = inputs[0].name
            self.input_names = tuple(self._inputs)
            self.input_dtype = self._inputs[self.input_name]
            self.input_shape = ()
        self._ids_input = next((n for n in self._inputs if "input_ids" in n.lower()), None)

    def _probe(self) -> np.ndarray:
        """A fixed batch of inputs for every input (seeded), as named records or a plain array."""
        gen = np.random.default_rng(0)
        feeds: dict[str, np.ndarray] = {}
        for name, dt in self._inputs.items():
            shape = (_PROBE_ROWS, *[d or 8 for d in self._input_dims[name]])
            low = name.lower()
            a: np.ndarray
            if dt.kind == "f":
                a = gen.uniform(0, 1, size=shape)
                a[_PROBE_ROWS // 2 :] = gen.normal(0, 3, size=(_PROBE_ROWS - _PROBE_ROWS // 2, *shape[1:]))
            elif "mask" in low:
                a = np.ones(shape)
            elif "type" in low or "position" in low:
                a = np.zeros(shape)
            else:
                a = gen.integers(0, 2, size=shape)
            feeds[name] = a.astype(dt)
        return feeds[self.input_name] if self.input_names is None else pack_inputs(feeds)

    def _select_output(self, output: str | int | None, mode: str, label_classes: int | None) -> None:
        outs = self.session.get_outputs()
        names = [o.name for o in outs]
        probe_x = self._probe()
        raw_all = self._run_session(probe_x, names)
        n = len(probe_x)
        kinds: dict[str, str] = {}
        skipped: dict[str, str] = {}
        for o, val in zip(outs, raw_all):
            if o.type.startswith("seq(map(") and "float" in o.type:
                kinds[o.name] = "zipmap"
            elif isinstance(val, np.ndarray) and val.dtype.kind == "f" and val.ndim in (1, 2) and len(val) == n:
                kinds[o.name] = "binary" if val.ndim == 1 or val.shape[1] == 1 else "tensor"
            elif isinstance(val, np.ndarray) and val.dtype.kind in "iub":
                skipped[o.name] = f"{o.type}: predicted labels, not scores"
            elif isinstance(val, np.ndarray):
                skipped[o.name] = f"shape {list(val.shape)} for {n} inputs, not (batch, classes)"
            else:
                skipped[o.name] = f"{o.type}: not a score tensor"
        listing = "; ".join(f"{o.name}: {o.type} {_shape(o.shape)}" for o in outs)
        if output is not None:
            if isinstance(output, str) and output.strip().lstrip("-").isdigit() and output not in names:
                output = int(output)
            if isinstance(output, (int, np.integer)) and not isinstance(output, bool):
                if not 0 <= int(output) < len(outs):
                    raise InvalidParameterError(f"output index {output} out of range; the model has {len(outs)} outputs ({listing}).")
                chosen = names[int(output)]
            elif output in names:
                chosen = str(output)
            else:
                raise InvalidParameterError(f"output {output!r} is not an output of {self.path.name}; its outputs are {listing}.")
            if chosen not in kinds:
                raise InvalidParameterError(
                    f"output {chosen!r} cannot hold class scores: {skipped[chosen]}. Outputs: {listing}. Choose another with --output."
                )
            reason = "chosen with --output"
        else:
            if not kinds:
                raise self._fail(
                    f"{self.path.name}: no output holds class scores (batch, classes); outputs: {listing}. "
                    "audit-sdk audits classifiers; export the class scores as an output."
                )
            chosen_list = list(kinds)
            reason = "the only output holding float class scores"
            if len(chosen_list) > 1:
                for rank in (0, 1, 2):
                    named = [c for c in chosen_list if _name_rank(c) == rank]
                    if named:
                        chosen_list = named
                        reason = f"named like {('logits', 'probabilities', 'scores')[rank]}"
                        break
            if len(chosen_list) != 1:
                raise self._fail(
                    f"{self.path.name}: cannot tell which output holds the class scores: {listing}. "
                    f"Pass --output NAME|INDEX (load_target(..., output=...)), e.g. --output {chosen_list[-1]}."
                )
            chosen = chosen_list[0]
            if skipped:
                reason += "; skipped " + ", ".join(f"{k} ({v})" for k, v in skipped.items())
        self.output_name = self.selected_output = chosen
        self._kind = kinds[chosen]
        self.class_labels: list[Any] | None = None
        if self._kind == "zipmap":
            self._unzip(chosen)
            raw = self._run_session(probe_x, [self.output_name])[0]
        else:
            raw = raw_all[names.index(chosen)]
        self._check_class_labels()
        raw2 = np.asarray(raw, dtype=np.float64).reshape(len(raw), -1)
        width = 2 if self._kind == "binary" else raw2.shape[1]
        # a wider output named like class scores (or from a classifier node) may just meet labels that miss some classes
        named_scores = _name_rank(chosen) is not None or self.class_labels is not None
        if output is None and label_classes and width > int(label_classes) and not named_scores:
            raise self._fail(
                f"{self.path.name}: output {chosen!r} has {width} columns but the audit labels span 0..{int(label_classes) - 1}; "
                f"it may not hold the class scores (an embedding?). Outputs: {listing}. Pass --output {chosen} if it does, "
                "or --output NAME of the class-score output."
            )
        self.notes: list[str] = []
        if label_classes and width > int(label_classes):
            self.notes.append(f"output {chosen!r} has {width} classes; the audit labels span only 0..{int(label_classes) - 1}")
        self.n_classes = int(width)
        self.selection_reason = reason
        self._decide_scores(raw2, mode)

    def _unzip(self, name: str) -> None:
        """Read a ZipMap output from the (batch, classes) tensor it wraps: vectorised and in class order."""
        prod = self.graph.producer.get(name)
        if prod is None or prod[0] != "ZipMap" or self.graph.model is None:
            raise self._fail(
                f"{self.path.name}: output {name!r} is a sequence of maps whose source tensor cannot be found; "
                "re-export without ZipMap (skl2onnx: options={id(model): {'zipmap': False}}) or pass --output of a tensor output."
            )
        from onnx import helper

        src = prod[1][0]
        model = self.graph.model
        if src not in {o.name for o in model.graph.output}:
            model.graph.output.append(helper.make_empty_tensor_value_info(src))
        self.session = self._open(model.SerializeToString())
        self.output_name = src
        self.class_labels = list(prod[2].get("classlabels_int64s") or prod[2].get("classlabels_strings") or []) or None

    def _check_class_labels(self) -> None:
        labels = self.class_labels or self.graph.class_labels()
        if labels is None:
            return
        self.class_labels = labels
        if all(isinstance(c, (int, np.integer)) for c in labels) and list(labels) != list(range(len(labels))):
            raise self._fail(
                f"{self.path.name}: the model's classes are {labels[:10]}{'...' if len(labels) > 10 else ''}, not 0..{len(labels) - 1}; "
                "audit labels are column indices. Encode the labels (e.g. sklearn LabelEncoder) before training and export again."
            )

    def _decide_scores(self, raw: np.ndarray, mode: str) -> None:
        src = self.graph.source_op(self.output_name)
        name = self.output_name
        if src is not None and src.endswith("Regressor"):
            raise self._fail(
                f"{self.path.name}: output {name!r} comes from a {src}: a regressor, not a classifier; audit-sdk audits classifiers."
            )
        if self._kind == "binary":
            in_unit = bool(((raw >= 0) & (raw <= 1)).all())
            if mode == "auto":
                if src == "Sigmoid":
                    mode = "probabilities"
                elif not in_unit:
                    mode = "logits"
                else:
                    raise self._fail(
                        f"{self.path.name}: output {name!r} is a one-column binary head whose values on a probe batch all lie in [0, 1]; "
                        "it may be a probability or a logit. Pass --scores probabilities or --scores logits."
                    )
            if mode == "probabilities" and not in_unit:
                raise self._fail(
                    f"{self.path.name}: --scores probabilities, but output {name!r} has values outside [0, 1]; use --scores logits."
                )
        else:
            is_prob = bool((raw >= 0).all() and np.allclose(raw.sum(axis=1), 1.0, atol=1e-3))
            if src == "Sigmoid" and raw.shape[1] > 1:
                raise self._fail(
                    f"{self.path.name}: output {name!r} holds {raw.shape[1]} independent sigmoid scores (multi-label), not class "
                    "probabilities; audit-sdk audits single-label classifiers. Pass --output of the logits if the graph has them."
                )
            if mode == "auto":
                mode = "probabilities" if (is_prob or (src == "Softmax" and is_prob)) else "logits"
            elif mode == "probabilities" and not is_prob:
                raise self._fail(
                    f"{self.path.name}: --scores probabilities, but rows of output {name!r} are not non-negative summing to 1 on a probe "
                    "batch; use --scores logits."
                )
        self.outputs_logits = mode == "logits"
        self._outputs_mode = mode
        self.capabilities = frozenset({"labels", "probabilities", "logits"} if self.outputs_logits else {"labels", "probabilities"})

    # ----------------------------------------------------------------- queries
    def check_input(self, x: Any) -> np.ndarray:
        if self.input_names is not None and not isinstance(x, Mapping) and np.asarray(x).dtype.names is None:
            if self._ids_input is None:
                raise InvalidDataError(
                    f"the model takes inputs {list(self.input_names)}; pass named inputs (a mapping, or x_members__<input> arrays in the .npz)."
                )
            x = {self._ids_input: x}  # plain token ids for a text classifier
        return super().check_input(x)

    def check_named_input(self, x: np.ndarray) -> np.ndarray:
        given = tuple(x.dtype.names or ())
        if self.input_names is None:
            if given != (self.input_name,):
                raise InvalidDataError(f"the data holds named inputs {list(given)} but the model takes one input {self.input_name!r}.")
            return super().check_input(np.ascontiguousarray(x[self.input_name]))
        extra = [k for k in given if k not in self._inputs]
        missing = [k for k in self._inputs if k not in given]
        problems = [f"inputs {extra} are not inputs of the model {list(self._inputs)}"] if extra else []
        for k in missing:
            low = k.lower()
            if "token_type" in low and self._ids_input in given:
                continue
            if "attention_mask" in low and self._ids_input in given:
                if self.pad_token_id is None:
                    problems.append(
                        f"the model needs {k!r} and the data has none: pass --pad-id ID (pad_token_id=ID) to build it as "
                        f"{self._ids_input} != ID, or store x_<split>__{k} in the .npz"
                    )
                continue
            problems.append(f"the model needs input {k!r}, which the data does not hold")
        for k in given:
            if k not in self._inputs:
                continue
            a, dt, dims = x[k], self._inputs[k], self._input_dims[k]
            if a.ndim - 1 != len(dims) or any(d is not None and d != s for d, s in zip(dims, a.shape[1:])):
                problems.append(f"input {k!r} has per-sample shape {a.shape[1:]}; the model expects {dims}")
            elif dt.kind in "iub" and a.dtype.kind == "f" and a.size and not np.array_equal(a, np.round(a)):
                problems.append(f"input {k!r} holds non-integral floats but the model takes {dt}")
            elif a.dtype.kind == "f" and a.size and not np.isfinite(a).all():
                problems.append(f"input {k!r} contains NaN or inf")
        if problems:
            raise InvalidDataError("named inputs do not fit the model: " + "; ".join(problems) + ".")
        return x

    def _feeds(self, x: np.ndarray) -> dict[str, np.ndarray]:
        if self.input_names is None:
            return {self.input_name: np.ascontiguousarray(x, dtype=self.input_dtype)}
        given = {k: x[k] for k in (x.dtype.names or ())}
        feeds: dict[str, np.ndarray] = {}
        for k, dt in self._inputs.items():
            if k in given:
                feeds[k] = np.ascontiguousarray(given[k], dtype=dt)
            elif "attention_mask" in k.lower():
                feeds[k] = (given[self._ids_input] != self.pad_token_id).astype(dt)  # type: ignore[index]
            else:  # token_type_ids: one segment
                feeds[k] = np.zeros(given[self._ids_input].shape, dtype=dt)  # type: ignore[index]
        return feeds

    def _run_session(self, x: np.ndarray, names: list[str]) -> list[Any]:
        """Run ``names`` on ``x``, in chunks of the fixed batch (the last padded) when the graph has one."""
        feeds = self._feeds(x)
        n = len(x)
        b = self.fixed_batch
        if b is None:
            return self._run_feeds(feeds, names)
        parts: list[list[Any]] = []
        for i in range(0, n, b):
            chunk = {k: v[i : i + b] for k, v in feeds.items()}
            m = len(next(iter(chunk.values())))
            if m < b:  # pad with copies of the chunk's first row; their outputs are dropped
                chunk = {k: np.concatenate([v, np.repeat(v[:1], b - m, axis=0)]) for k, v in chunk.items()}
            parts.append([o[:m] for o in self._run_feeds(chunk, names)])
        return [
            np.concatenate([p[j] for p in parts]) if isinstance(parts[0][j], np.ndarray) else sum((list(p[j]) for p in parts), [])
            for j in range(len(names))
        ]

    def _run_feeds(self, feeds: dict[str, np.ndarray], names: list[str]) -> list[Any]:
        try:
            if self.io_binding:
                return self._run_bound(feeds, names)
            return list(self.session.run(names, feeds))
        except Exception as exc:
            shapes = {k: f"{v.shape} {v.dtype}" for k, v in feeds.items()}
            raise InvalidModelError(
                f"onnxruntime failed on inputs {shapes}: {str(exc).strip()[:200]}. "
                f"The model expects {[(k, self._input_dims[k], str(v)) for k, v in self._inputs.items()]}."
            ) from exc

    def _run_bound(self, feeds: dict[str, np.ndarray], names: list[str]) -> list[Any]:
        ort = _ort()
        binding = self.session.io_binding()
        for k, v in feeds.items():
            binding.bind_ortvalue_input(k, ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v), self._device_type, 0))
        for name in names:
            binding.bind_output(name, self._device_type)
        self.session.run_with_iobinding(binding)
        return list(binding.copy_outputs_to_cpu())

    def _predict_raw(self, x: np.ndarray) -> np.ndarray:
        out = np.asarray(self._run_session(x, [self.output_name])[0])
        if self._kind != "binary":
            return out
        col = out.reshape(len(out), 1)
        if self.outputs_logits:  # softmax([0, z]) = (1 - sigmoid(z), sigmoid(z))
            return np.concatenate([np.zeros_like(col), col], axis=1)
        col = col.astype(np.float64)  # 1 - p in float64: a float32 complement would round small probabilities away
        return np.concatenate([1 - col, col], axis=1)

    # ----------------------------------------------------------------- description
    @property
    def op_types(self) -> frozenset[str]:
        """The graph's op types as ``domain:op`` (``ai.onnx.ml:TreeEnsembleClassifier``); empty if onnx is missing."""
        return self.graph.ops

    @property
    def model_family(self) -> str:
        """``tree-ensemble`` (ai.onnx.ml TreeEnsemble*), ``linear``, ``svm``, ``neural-network`` or ``unknown``."""
        return graph_family(self.graph.ops)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(
            {
                "path": str(self.path),
                "providers": list(self.providers),
                "outputs": self._outputs_mode,
                "io_binding": self.io_binding,
                "output": self.selected_output,
                "output_kind": self._kind,
                "selection": self.selection_reason,
                "model_family": self.model_family,
                "op_types": sorted(self.graph.ops),
                "graph": self._summary,
                "fixed_batch": self.fixed_batch,
            }
        )
        if self.notes:
            d["notes"] = list(self.notes)
        if self.class_labels is not None:
            d["class_labels"] = [str(c) if not isinstance(c, (int, np.integer)) else int(c) for c in self.class_labels]
        if self.input_names is not None:
            d["input_names"] = list(self.input_names)
            d["pad_token_id"] = self.pad_token_id
        return d


@hookimpl
def make_target(model: Any, options: dict[str, Any]) -> Target | None:
    if isinstance(model, (str, Path)) and str(model).lower().endswith(".onnx"):
        known = {
            "batch_size",
            "output",
            "scores",
            "label_classes",
            "pad_token_id",
            "outputs",
            "output_index",
            "device",
            "intra_op_threads",
            "io_binding",
        }
        return OnnxTarget(model, **{k: v for k, v in options.items() if k in known and v is not None})
    return None
