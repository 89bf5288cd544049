"""The torch engine (GPUs, DistributedDataParallel under torchrun) and a small API for people who go on in PyTorch.

Shapes: B streams (the whole batch), n = B/W the streams of one rank, T steps, D embedding, H hidden, V vocabulary.
This is the only module that imports torch, and it does so inside functions: without torch, importing it works and
asking for the engine raises EngineUnavailable with the line that installs the extra.

The same model as charrnn/model.py: nn.Embedding -> nn.RNN/LSTM/GRU(batch_first=True) -> nn.Linear, under the
checkpoint's `state_dict` names. Simplifications chosen on purpose, so that the two engines give the same numbers:
- Training runs one single-layer recurrent module per layer (`_Stack`), because dropout between layers is applied
  here with masks drawn from the run's NumPy Generator, in model.forward's order and shapes ((T,B,H) time-major,
  the whole batch, every rank the same draws, each taking its rows): the RNG stays in lockstep across engines,
  resumes and ranks. Inference modules (`CharRNN`, the API) use one multi-layer module and torch's own dropout.
- The weights start from charrnn's init_params for the seed (the caller passes them in); the optimizers are
  torch.optim's, with charrnn's hyperparameters (optim.OPTIMIZERS[...].defaults; Adam with weight decay is AdamW);
  the global-norm clip is charrnn's (no 1e-6 in the denominator, norm accumulated in float64).
- The optimizer state crosses the seam in charrnn's layout (optim.Optimizer.state_dict: "m/<name>", "v/<name>",
  "t"), so `resume/` keys are the same whichever engine wrote them.
Distributed: rank r computes streams [r·n, (r+1)·n); DDP averages the gradients, which for a loss that is a mean
over equal shards is the full batch's gradient; the loss is averaged the same way; the carried state is gathered
after every step so that rank 0 can checkpoint at any time without a collective.
"""

from __future__ import annotations

import contextlib
import os
import re

import numpy as np

from charrnn.checkpoint import Checkpoint, load, save
from charrnn.cells import CELLS
from charrnn.config import ModelConfig, TrainConfig, param_shapes
from charrnn.engine import INSTALL_TORCH, EngineUnavailable
from charrnn.optim import OPTIMIZERS, make_optimizer

CELL_MODULES = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}  # torch.nn class per charrnn cell
# charrnn's optimizer buffers ("m", "v") under torch.optim's state names, per optimizer
TORCH_BUFFERS = {"adam": {"m": "exp_avg", "v": "exp_avg_sq"}, "rmsprop": {"v": "square_avg", "m": "momentum_buffer"},
                 "adagrad": {"v": "sum"}, "sgd": {"m": "momentum_buffer"}}
DEVICE_PATTERN = re.compile(r"cpu|cuda(:\d+)?|mps")


def _torch():
    try:
        import torch
    except ImportError:
        raise EngineUnavailable(f"--engine torch needs PyTorch, which is not installed; install the extra with: "
                                f"{INSTALL_TORCH}") from None
    return torch


def check_device(device: str):
    """torch.device for a --device value that exists here; EngineUnavailable otherwise."""
    torch = _torch()
    if not DEVICE_PATTERN.fullmatch(device):
        raise EngineUnavailable(f"--device {device!r} is not a device; use cpu, cuda, cuda:N or mps")
    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.partition(":")[2] or 0)
        if index >= count:
            have = f"{count} CUDA device(s)" if count else "no CUDA device (or a torch build without CUDA)"
            raise EngineUnavailable(f"--device {device} is not available: this machine has {have}; "
                                    f"use --device cpu")
    if device == "mps" and not torch.backends.mps.is_available():
        raise EngineUnavailable("--device mps is not available here (Apple silicon with an MPS build of torch)")
    return torch.device(device)


# ------------------------------------------------------------------------------------------------ distributed


class Distributed:
    """This process's place in a torchrun job (WORLD_SIZE, RANK, LOCAL_RANK) and the collectives the run needs."""

    def __init__(self, torch, device):
        self.torch, self.device = torch, device
        self.world, self.rank = int(os.environ["WORLD_SIZE"]), int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))

    @contextlib.contextmanager
    def main_first(self):
        """Rank 0 runs the block first (e.g. prepares the corpus cache), then the others (who find it ready)."""
        if self.rank != 0:
            self.torch.distributed.barrier()
        yield
        if self.rank == 0:
            self.torch.distributed.barrier()

    def broadcast(self, value):
        """Rank 0's value of a small picklable object (a seed), on every rank."""
        box = [value]
        self.torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def agree(self, main: list[float], flags: list[bool]) -> tuple[list[float], list[bool]]:
        """(rank 0's `main` values, for each flag whether any rank raised it), one all-reduce."""
        torch = self.torch
        v = torch.zeros(len(main) + len(flags), dtype=torch.float64, device=self.device)
        if self.rank == 0:
            v[: len(main)] = torch.tensor(main, dtype=torch.float64)
        v[len(main):] = torch.tensor([float(f) for f in flags], dtype=torch.float64)
        torch.distributed.all_reduce(v)
        got = v.tolist()
        return got[: len(main)], [x > 0 for x in got[len(main):]]


def prepare(device: str = "cpu") -> Distributed | None:
    """Check torch and the device; under torchrun (WORLD_SIZE > 1) join the process group (nccl on CUDA, gloo
    otherwise; `--device cuda` becomes cuda:LOCAL_RANK) and return the Distributed context, else None."""
    torch = _torch()
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        check_device(device)
        return None
    if device == "cuda":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    dev = check_device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Distributed(torch, dev)


# --------------------------------------------------------------------------------------------------- modules


def _stack_name(name: str) -> str:
    """A checkpoint name under _Stack's layout: rnn.weight_ih_l1 -> layers.1.weight_ih_l0; others unchanged."""
    if not name.startswith("rnn."):
        return name
    base, k = name[len("rnn."):].rsplit("_l", 1)
    return f"layers.{k}.{base}_l0"


def _stack(torch, mc: ModelConfig):
    """The training module: embedding, one single-layer recurrent module per layer, decoder."""
    nn = torch.nn
    cls = getattr(nn, CELL_MODULES[mc.cell])

    class _Stack(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(mc.vocab_size, mc.embed)
            self.layers = nn.ModuleList(cls(mc.embed if k == 0 else mc.hidden, mc.hidden, batch_first=True)
                                        for k in range(mc.layers))
            self.decoder = nn.Linear(mc.hidden, mc.vocab_size)

        def forward(self, ids, state, masks=None):
            """ids (n,T), state per layer (h,) or (h, c) each (1,n,H), masks per layer (n,T,H) or None ->
            logits (n,T,V), final state per layer."""
            x = self.embedding(ids)  # (n,T,D)
            new = []
            for k, layer in enumerate(self.layers):
                if k > 0 and masks is not None:
                    x = x * masks[k - 1]  # dropout on layer k's input
                x, s = layer(x, state[k] if len(state[k]) == 2 else state[k][0])  # (n,T,H)
                new.append(s if isinstance(s, tuple) else (s,))
            if masks is not None:
                x = x * masks[-1]  # dropout before the decoder
            return self.decoder(x), new  # (n,T,V)

    return _Stack()


def _optimizer(torch, params, tc: TrainConfig):
    """torch.optim configured as charrnn's optimizer `tc.optimizer` (see optim.py for the update rules)."""
    name, wd, mu, o = tc.optimizer, tc.weight_decay, tc.momentum, torch.optim
    h = OPTIMIZERS[name].defaults
    if name == "adam":
        cls = o.AdamW if wd else o.Adam  # charrnn's Adam decays the weights decoupled, as AdamW does
        return cls(params, lr=tc.lr, betas=(h["beta1"], h["beta2"]), eps=h["eps"], weight_decay=wd)
    if name == "rmsprop":
        return o.RMSprop(params, lr=tc.lr, alpha=h["alpha"], eps=h["eps"], weight_decay=wd, momentum=mu)
    if name == "adagrad":
        return o.Adagrad(params, lr=tc.lr, eps=h["eps"], weight_decay=wd)
    return o.SGD(params, lr=tc.lr, momentum=mu, weight_decay=wd)


# ---------------------------------------------------------------------------------------------------- engine


class TorchEngine:
    """The engine seam of charrnn/engine.py computed by torch on `device`, optionally one rank of a DDP job."""

    name = "torch"

    def __init__(self, mc: ModelConfig, tc: TrainConfig, params: dict, device: str = "cpu",
                 dist: Distributed | None = None):
        torch = self.torch = _torch()
        make_optimizer(tc.optimizer, {}, tc.momentum, tc.weight_decay)  # the same checks as the NumPy engine
        self.device = dist.device if dist is not None else check_device(device)
        self.dist, self.world, self.rank = dist, dist.world if dist else 1, dist.rank if dist else 0
        if tc.batch % self.world:
            raise ValueError(f"--batch {tc.batch} does not split evenly over {self.world} processes; give a "
                             f"multiple of {self.world}")
        if self.device.type == "mps" and tc.dtype == "float64":
            raise EngineUnavailable("--device mps computes in float32 only; give --dtype float32")
        self.mc, self.tc, self.np_dtype = mc, tc, np.dtype(tc.dtype)
        self.dtype = getattr(torch, tc.dtype)
        self.n = tc.batch // self.world  # this rank's streams: [lo, lo + n)
        self.lo = self.rank * self.n
        self.where = str(self.device) + (f", {self.world} processes" if self.world > 1 else "")
        self.net = _stack(torch, mc).to(device=self.device, dtype=self.dtype)
        modules = dict(self.net.named_parameters())
        self.named = [(name, modules[_stack_name(name)]) for name in param_shapes(mc)]  # checkpoint order
        self.load_weights(params)
        self.net.train()
        self.call = self.net
        if dist is not None:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.call = torch.nn.parallel.DistributedDataParallel(self.net, device_ids=ids)
        self.opt = _optimizer(torch, [p for _, p in self.named], tc)
        self.t = 0  # optimizer steps taken (charrnn's "t")
        self.states = CELLS[mc.cell].states  # (h,) or (h, c)
        self.reset_state()
        self._next = None

    # -- one step

    def _masks(self, rng: np.random.Generator, T: int) -> list:
        """Dropout masks as model.forward draws them: per layer above the first, then the decoder's, each (T,B,H)
        over the whole batch; this rank keeps its rows, batch-first (n,T,H)."""
        p, B, H = self.mc.dropout, self.tc.batch, self.mc.hidden
        masks = []
        for _ in range(self.mc.layers):
            m = (rng.random((T, B, H), dtype=self.np_dtype) >= p).astype(self.np_dtype)  # (T,B,H)
            m *= 1.0 / (1.0 - p)
            rows = np.ascontiguousarray(m[:, self.lo : self.lo + self.n].transpose(1, 0, 2))  # (n,T,H)
            masks.append(self.torch.from_numpy(rows).to(self.device))
        return masks

    def _ids(self, a: np.ndarray):
        return self._tensor_ids(a[self.lo : self.lo + self.n])  # (n,T) this rank's rows

    def compute(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator | None) -> tuple[float, float]:
        """x, y (B,T) -> (mean loss over the whole batch, gradient norm before clipping); nothing updated yet."""
        torch = self.torch
        masks = self._masks(rng, x.shape[1]) if rng is not None and self.mc.dropout > 0 else None
        logits, new = self.call(self._ids(x), self.state, masks)  # (n,T,V)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, self.mc.vocab_size), self._ids(y).reshape(-1))
        for _, p in self.named:
            p.grad = None
        loss.backward()  # under DDP the gradients arrive averaged over the ranks
        loss = loss.detach().to(torch.float64)
        if self.world > 1:
            torch.distributed.all_reduce(loss)
            loss /= self.world
        self._next = [tuple(s.detach() for s in layer) for layer in new]
        return float(loss), self._clip()

    def _clip(self) -> float:
        """charrnn's global-norm clip (optim.clip_grad_norm): the norm in float64, scale max/norm when above."""
        grads = [p.grad for _, p in self.named]
        norms = [self.torch.linalg.vector_norm(g, dtype=self.torch.float64) for g in grads]
        norm = float(self.torch.linalg.vector_norm(self.torch.stack(norms)))
        clip = self.tc.clip
        if clip > 0 and np.isfinite(norm) and norm > clip:
            for g in grads:
                g.mul_(clip / norm)
        return norm

    def apply(self, lr: float) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.step()
        self.t += 1
        self.state, self._next = self._next, None
        if self.world > 1:
            self._gather()

    def _gather(self) -> None:
        """Every rank's carried state, (B,H) per tensor, so rank 0 can checkpoint between any two steps."""
        full = []
        for layer in self.state:
            parts = []
            for s in layer:
                pieces = [self.torch.empty_like(s) for _ in range(self.world)]
                self.torch.distributed.all_gather(pieces, s.contiguous())
                parts.append(self.torch.cat(pieces, dim=1)[0])  # (B,H)
            full.append(tuple(parts))
        self.full = full

    def scorer(self):
        """train.evaluate's chunk loss on this device (validation runs where the weights are): x, y (B',T) ids,
        state per layer (numpy at the first chunk, then this engine's tensors) -> (summed nll in float64, state)."""
        torch, V = self.torch, self.mc.vocab_size

        def score(x: np.ndarray, y: np.ndarray, state: list):
            if isinstance(state[0][0], np.ndarray):
                state = [tuple(self._tensor(a)[None] for a in layer) for layer in state]  # (1,B',H) each
            with torch.no_grad():
                logits, state = self.net(self._tensor_ids(x), state)  # (B',T,V) all rows, not this rank's
                logits = logits.reshape(-1, V).to(torch.float64)  # as model.loss: the nll in float64
                nll = torch.nn.functional.cross_entropy(logits, self._tensor_ids(y).reshape(-1), reduction="sum")
            return float(nll), state

        return score

    def _tensor_ids(self, a: np.ndarray):
        return self.torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)).to(self.device)

    # -- what crosses the seam, in charrnn's layouts

    def weights(self) -> dict[str, np.ndarray]:
        """Copies of the latest weights under the checkpoint's names."""
        return {name: p.detach().cpu().numpy().copy() for name, p in self.named}

    def load_weights(self, params: dict) -> None:
        with self.torch.no_grad():
            for name, p in self.named:
                p.copy_(self.torch.from_numpy(np.asarray(params[name])))

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """torch.optim's state in charrnn's layout: "<buffer>/<name>" for charrnn's buffers, "t"."""
        ref = make_optimizer(self.tc.optimizer, {}, self.tc.momentum, self.tc.weight_decay)
        out = {}
        for b in ref._buffers():
            key = TORCH_BUFFERS[self.tc.optimizer][b]
            for name, p in self.named:
                st = self.opt.state.get(p, {})
                out[f"{b}/{name}"] = (st[key].detach().cpu().numpy().copy() if key in st
                                      else np.zeros(p.shape, self.np_dtype))
        out["t"] = np.array(self.t, dtype=np.int64)
        return out

    def load_optimizer_state(self, d: dict) -> None:
        """From charrnn's layout, checked as the NumPy optimizer checks it (ValueError when it does not fit)."""
        ref = make_optimizer(self.tc.optimizer, self.weights(), self.tc.momentum, self.tc.weight_decay)
        ref.load_state_dict(d)
        torch, self.t = self.torch, ref.t
        if self.t == 0:
            return
        for name, p in self.named:
            st = self.opt.state[p]
            if self.tc.optimizer != "sgd":
                st["step"] = torch.tensor(float(self.t))  # where and as torch.optim keeps it (not capturable)
            for b, key in TORCH_BUFFERS[self.tc.optimizer].items():
                if f"{b}/{name}" in ref.state:
                    st[key] = torch.from_numpy(ref.state[f"{b}/{name}"].copy()).to(self.device)

    def carried_state(self) -> list[tuple[np.ndarray, ...]]:
        """The whole batch's carried state, per layer (h,) or (h, c), each (B,H)."""
        layers = self.full if self.world > 1 else [tuple(s[0] for s in layer) for layer in self.state]
        return [tuple(s.detach().cpu().numpy().copy() for s in layer) for layer in layers]

    def load_carried_state(self, state: list) -> None:
        rows = slice(self.lo, self.lo + self.n)
        self.state = [tuple(self._tensor(np.asarray(a)[rows])[None] for a in layer) for layer in state]
        if self.world > 1:
            self.full = [tuple(self._tensor(np.asarray(a)) for a in layer) for layer in state]

    def reset_state(self) -> None:
        zeros = [tuple(np.zeros((self.tc.batch, self.mc.hidden), self.np_dtype) for _ in range(self.states))
                 for _ in range(self.mc.layers)]
        self.load_carried_state(zeros)

    def _tensor(self, a: np.ndarray):
        return self.torch.from_numpy(np.ascontiguousarray(a, dtype=self.np_dtype)).to(self.device)

    def agree(self, main: list[float], flags: list[bool]) -> tuple[list[float], list[bool]]:
        return self.dist.agree(main, flags) if self.dist is not None else (main, flags)


# ------------------------------------------------------------------------------------ API: checkpoint <-> module


def module(mc: ModelConfig):
    """An untrained `CharRNN` for `mc`: embedding -> multi-layer nn.RNN/LSTM/GRU(batch_first=True, dropout between
    layers) -> nn.Dropout -> decoder; its state_dict names are the checkpoint's. forward(ids (N,T), state=None) ->
    (logits (N,T,V), state as nn.RNN/GRU (L,N,H) or nn.LSTM (h, c) returns it)."""
    torch = _torch()
    nn = torch.nn
    cls = getattr(nn, CELL_MODULES[mc.cell])

    class CharRNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = mc
            self.embedding = nn.Embedding(mc.vocab_size, mc.embed)
            self.rnn = cls(mc.embed, mc.hidden, num_layers=mc.layers, batch_first=True,
                           dropout=mc.dropout if mc.layers > 1 else 0.0)
            self.drop = nn.Dropout(mc.dropout)
            self.decoder = nn.Linear(mc.hidden, mc.vocab_size)

        def forward(self, ids, state=None):
            out, state = self.rnn(self.embedding(ids), state)  # (N,T,H)
            return self.decoder(self.drop(out)), state

    return CharRNN()


def load_module(path, device: str = "cpu"):
    """A charrnn checkpoint as a ready nn.Module (eval mode, the checkpoint's dtype, on `device`) with `.config`
    (ModelConfig), `.vocab` ((V,) uint32 code points: id k is chr(vocab[k])) and `.train_config`."""
    torch = _torch()
    ckpt = path if isinstance(path, Checkpoint) else load(path)
    net = module(ckpt.model_config)
    dtype = next(iter(ckpt.params.values())).dtype
    net.to(dtype=getattr(torch, str(dtype)))
    net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in ckpt.params.items()})
    net.vocab, net.train_config = ckpt.vocab, ckpt.train_config
    return net.to(check_device(device)).eval()


def to_checkpoint(net, vocab, train_config: TrainConfig | None = None) -> Checkpoint:
    """A Checkpoint (sample and eval read it; no training state) from a module laid out as `module()` builds it
    (embedding, rnn, decoder) and its vocabulary ((V,) code points, or the text's characters as a string)."""
    torch = _torch()
    kind = {getattr(torch.nn, cls): cell for cell, cls in CELL_MODULES.items()}.get(type(net.rnn))
    if kind is None or not net.rnn.batch_first or net.rnn.bidirectional:
        raise ValueError("the module's rnn must be a unidirectional nn.RNN, nn.LSTM or nn.GRU with batch_first=True")
    if isinstance(vocab, str):
        vocab = sorted(set(map(ord, vocab)))
    mc = ModelConfig(cell=kind, vocab_size=net.embedding.num_embeddings, embed=net.embedding.embedding_dim,
                     hidden=net.rnn.hidden_size, layers=net.rnn.num_layers, dropout=float(net.rnn.dropout))
    params = {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items() if k in param_shapes(mc)}
    dtype = "float64" if all(v.dtype == np.float64 for v in params.values()) else "float32"
    params = {k: v.astype(dtype) for k, v in params.items()}
    tc = train_config or TrainConfig(dtype=dtype)
    return Checkpoint(model_config=mc, train_config=tc, vocab=np.asarray(vocab, dtype=np.uint32), params=params)


def save_module(path, net, vocab, train_config: TrainConfig | None = None) -> None:
    """Write a module and its vocabulary as a charrnn checkpoint (atomically, validated like any other)."""
    save(path, to_checkpoint(net, vocab, train_config))
