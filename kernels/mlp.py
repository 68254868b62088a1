"""Fused Triton kernels: many tiny MLPs trained in one launch, one run per lane.

``train_kernel`` trains the runs of one group (same architecture, input normalization and
optimizer family) from epoch ``e0`` to ``e1`` and then evaluates them, in one launch. Each
program owns ``BLOCK_R`` lanes, one per run (or ``SPLIT`` per run). The weights and
gradients stay in registers for the whole launch; the optimizer state is read and written
at steps only, from the program's tile of the state (in cache). Tensors are laid out with
the lanes last, ``[out, in, BLOCK_R]``, so a thread holds whole layers of its own run and
every sum over a layer stays inside the thread. kernels/NOTES.md has the timings.

Lanes step in lockstep: step ``s`` of epoch ``e`` is, for every lane, its own batch ``s`` of
that epoch (``min(batch_size, n - s * batch_size)`` rows, none once past its epoch's last
batch). The samples of a step are visited one at a time, each lane reading its own row,
and each lane takes its optimizer step at the end of the step if it had rows. Lanes with
different batch sizes therefore share a launch; the host sorts runs by batch size so the
lanes of one program waste few iterations.

Unshuffled lanes read the training rows in order. A shuffled lane reads, just as
contiguously, a copy of them in its epoch's order, one per (seed, epoch), which the host
gathers after ``order_kernel`` writes the permutations (the counter-based Feistel
permutation of trainer/spec/order.py): no dependent load per row (kernels/NOTES.md, v6).

The math, for an MLP with layers A (input), B, C (as deep as the model is):

    h0 = x  (batchnorm: (x - mean_batch) / sqrt(var_batch + eps) * gamma + beta)
    a = W h + b;  h' = act(a);  z = last layer's a (K outputs)
    dz = mse: 2 (z - y) / K | bce: sigmoid(z) - y | cross_entropy: softmax(z) - onehot(y);
    gradients summed over the batch, then / rows
    dW += da h^T;  db += da;  da_prev = (W^T da) * act'(a_prev)

Padding rows (``OUTP > OUT``) carry zero weights and zero activations, so they stay zero.
"""

import triton
import triton.language as tl

BN_EPS = tl.constexpr(1e-5)             # nn.BatchNorm1d's defaults
BN_MOMENTUM = tl.constexpr(0.1)

ACT_SIGMOID, ACT_TANH, ACT_RELU = 0, 1, 2
LOSS_MSE, LOSS_BCE, LOSS_CE = 0, 1, 2
OPT_SGD, OPT_ADAM = 0, 1       # adam covers adamw (decoupled weight decay per lane)


# ---- batch order ---------------------------------------------------------------------
@triton.jit
def _mix32(x):
    """trainer.order.mix32 on uint32 (multiplications wrap modulo 2**32)."""
    x = x ^ (x >> 16)
    x = x * 0x7FEB352D
    x = x ^ (x >> 15)
    x = x * 0x846CA68B
    return x ^ (x >> 16)


@triton.jit
def _feistel(x, k0, k1, k2, k3, half, lo_mask):
    """trainer.order.feistel: four rounds on ``2 * half`` bits."""
    left = x >> half
    right = x & lo_mask
    left, right = right, left ^ (_mix32(right ^ k0) & lo_mask)
    left, right = right, left ^ (_mix32(right ^ k1) & lo_mask)
    left, right = right, left ^ (_mix32(right ^ k2) & lo_mask)
    left, right = right, left ^ (_mix32(right ^ k3) & lo_mask)
    return (left << half) | right


ORDER_GRID_Y = 65_535     # CUDA's limit on a grid's second axis


def order_grid(keys: int, n: int, block: int) -> tuple[int, int]:
    """order_kernel's grid for ``keys`` permutations of ``n`` rows: a program per BLOCK
    positions, at most ORDER_GRID_Y along the rows (past 67,107,840 rows at BLOCK 1024 a
    program loops over several blocks)."""
    return keys, max(1, min(-(-n // block), ORDER_GRID_Y))


@triton.jit(do_not_specialize=["n", "half", "lo_mask"])
def order_kernel(keys_ptr, out_ptr, n, half, lo_mask, BLOCK: tl.constexpr):
    """out[q, p] = row visited at position p under round keys q (int64 [Q, 4], 32-bit
    values), for p < n: trainer.order.permutations, cycle-walking included.
    Grid: order_grid(Q, n, BLOCK); program (q, j) takes blocks j, j + grid[1], ..."""
    q = tl.program_id(0).to(tl.int64)
    k0 = tl.load(keys_ptr + q * 4).to(tl.uint32)
    k1 = tl.load(keys_ptr + q * 4 + 1).to(tl.uint32)
    k2 = tl.load(keys_ptr + q * 4 + 2).to(tl.uint32)
    k3 = tl.load(keys_ptr + q * 4 + 3).to(tl.uint32)
    h = half.to(tl.uint32)
    lm = lo_mask.to(tl.uint32)
    nu = n.to(tl.uint32)
    for b in range(tl.program_id(1), tl.cdiv(n, BLOCK), tl.num_programs(1)):
        pos = tl.cast(b, tl.int64) * BLOCK + tl.arange(0, BLOCK)    # n may be near 2**31
        inside = pos < n
        x = _feistel(pos.to(tl.uint32), k0, k1, k2, k3, h, lm)
        walk = (x >= nu) & inside
        while tl.max(walk.to(tl.int32), axis=0) > 0:   # a few passes: the domain is < 4 n
            x = tl.where(walk, _feistel(x, k0, k1, k2, k3, h, lm), x)
            walk = (x >= nu) & inside
        tl.store(out_ptr + q * n + pos, x.to(tl.int32), mask=inside)


# ---- state in and out -----------------------------------------------------------------
@triton.jit
def _mat_offsets(off, OUT: tl.constexpr, IN: tl.constexpr, OUTP: tl.constexpr,
                 INP: tl.constexpr, lane, BLOCK_R: tl.constexpr):
    """Offsets [OUTP, INP, BLOCK_R] of a weight (OUT x IN, row-major from entry ``off``) in
    a program's state tile [entries, BLOCK_R], each lane's own copy, and the mask of real
    entries. Every stride is a constant: a thread addresses all its entries from one
    register."""
    o = tl.arange(0, OUTP)[:, None, None]
    i = tl.arange(0, INP)[None, :, None]
    return (off + o * IN + i) * BLOCK_R + lane[None, None, :], (o < OUT) & (i < IN)


@triton.jit
def _vec_offsets(off, OUT: tl.constexpr, OUTP: tl.constexpr, lane, BLOCK_R: tl.constexpr):
    """Offsets [OUTP, BLOCK_R] of a vector entry (bias, batchnorm weight) in each lane's
    copy, and the mask."""
    o = tl.arange(0, OUTP)[:, None]
    return (off + o) * BLOCK_R + lane[None, :], o < OUT


@triton.jit
def _split_sum2(t, SPLIT: tl.constexpr):
    """t [X, BLOCK_R]: each lane gets the sum over the SPLIT lanes of its run, which are
    BLOCK_R / SPLIT apart (warp shuffles)."""
    if SPLIT > 1:
        X: tl.constexpr = t.shape[0]
        R: tl.constexpr = t.shape[1]
        s = tl.sum(tl.reshape(t, (X, SPLIT, R // SPLIT)), axis=1)
        t = tl.reshape(tl.broadcast_to(s[:, None, :], (X, SPLIT, R // SPLIT)), (X, R))
    return t


@triton.jit
def _split_sum3(t, SPLIT: tl.constexpr):
    """t [X, Y, BLOCK_R]: each lane gets the sum over the SPLIT lanes of its run."""
    if SPLIT > 1:
        X: tl.constexpr = t.shape[0]
        Y: tl.constexpr = t.shape[1]
        R: tl.constexpr = t.shape[2]
        s = tl.sum(tl.reshape(t, (X, Y, SPLIT, R // SPLIT)), axis=2)
        t = tl.reshape(tl.broadcast_to(s[:, :, None, :], (X, Y, SPLIT, R // SPLIT)), (X, Y, R))
    return t


# ---- the model --------------------------------------------------------------------------
@triton.jit
def _act(a, ACT: tl.constexpr):
    if ACT == 0:
        h = tl.sigmoid(a)
    elif ACT == 1:
        h = 1.0 - 2.0 / (tl.exp(2.0 * a) + 1.0)      # tanh, finite for any finite a
    else:
        h = tl.maximum(a, 0.0)
    return h


@triton.jit
def _act_grad(a, h, ACT: tl.constexpr):
    """d act / d a, from the pre-activation a and the activation h, as autograd has it."""
    if ACT == 0:
        d = h * (1.0 - h)
    elif ACT == 1:
        d = 1.0 - h * h
    else:
        d = (a > 0).to(tl.float32)
    return d


@triton.jit
def _dense(w, b, h):
    """w [OUT, IN, R], b [OUT, R], h [IN, R] -> w h + b, [OUT, R]."""
    return tl.sum(w * h[None, :, :], axis=1) + b


@triton.jit
def _dense_t(w, d):
    """w [OUT, IN, R], d [OUT, R] -> w^T d, [IN, R]."""
    return tl.sum(w * d[:, None, :], axis=0)


@triton.jit
def _forward(h0, wa, ba, wb, bb, wc, bc, a_in, b_in, ACT: tl.constexpr, DEPTH: tl.constexpr):
    """The outputs z [KP, R] for layer inputs h0 [DP, R], and what the backward pass needs:
    the hidden pre-activations aa, ab and activations ha, hb (a layer the depth lacks
    gets a stand-in that nothing reads)."""
    aa = _dense(wa, ba, h0)
    if DEPTH == 0:
        z = aa
        ha, ab, hb = aa, aa, aa
    else:
        ha = tl.where(a_in, _act(aa, ACT), 0.0)
        ab = _dense(wb, bb, ha)
        if DEPTH == 1:
            z = ab
            hb = ab
        else:
            hb = tl.where(b_in, _act(ab, ACT), 0.0)
            z = _dense(wc, bc, hb)
    return z, aa, ha, ab, hb


@triton.jit
def _batch_rows(xe, pos, valid, d_idx, d_in, D):
    """x [DP, R]: each lane's training rows at batch positions ``pos`` of its epoch's rows
    ``xe``, 0 where not ``valid``."""
    return tl.load(xe[None, :] + pos[None, :] * D + d_idx[:, None],
                   mask=valid[None, :] & d_in[:, None], other=0.0)


@triton.jit
def _targets(y_ptr, row, yk, valid, YK: tl.constexpr, YKP: tl.constexpr, MASKED: tl.constexpr):
    """The YK targets of each row (mse), or its class or label (YK = 1), 0 where not
    ``valid`` (MASKED) and on padding; ``row``, ``yk`` (the target's index, < YKP) and
    ``valid`` broadcast to the result's shape."""
    ptrs = y_ptr + row * YK + yk
    if MASKED:
        y = tl.load(ptrs, mask=valid & (yk < YK), other=0.0)
    elif YKP == YK:
        y = tl.load(ptrs)
    else:
        y = tl.load(ptrs, mask=yk < YK, other=0.0)
    return y


# The losses take the outputs z of many rows along axis 1 - AXIS (the lanes, or a tile of
# rows) and K outputs along AXIS (padded to KP: z = 0 there, and mse's targets too); kk,
# the output's index, is arange(KP) broadcast along AXIS. A row's values come out with AXIS
# kept, of size 1.
@triton.jit
def _softmax_parts(z, kk, K: tl.constexpr, AXIS: tl.constexpr):
    """For logits z (K real): exp(z - max) (0 on padding), their sum and the max."""
    real = kk < K
    zmax = tl.max(tl.where(real, z, float("-inf")), axis=AXIS, keep_dims=True)
    e = tl.where(real, tl.exp(z - zmax), 0.0)
    return e, tl.sum(e, axis=AXIS, keep_dims=True), zmax


@triton.jit
def _logit(z, kk, KP: tl.constexpr, AXIS: tl.constexpr):
    """bce's one logit of each row, out of its padding."""
    if KP > 1:
        z = tl.sum(tl.where(kk == 0, z, 0.0), axis=AXIS, keep_dims=True)
    return z


@triton.jit
def _loss(z, y, kk, LOSS: tl.constexpr, K: tl.constexpr, KP: tl.constexpr, AXIS: tl.constexpr):
    """The loss of each row: z the outputs, y the targets (mse) or the class or label."""
    if LOSS == 0:       # mse: averaged over the K outputs (padding: z = y = 0)
        r = z - y
        if KP == 1:
            out = r * r
        else:
            out = tl.sum(r * r, axis=AXIS, keep_dims=True) / K
    elif LOSS == 1:     # stable BCE with logits: max(z, 0) - z y + log(1 + exp(-|z|))
        z = _logit(z, kk, KP, AXIS)
        out = tl.maximum(z, 0.0) - z * y + tl.log(1.0 + tl.exp(-tl.abs(z)))
    else:               # cross_entropy: logsumexp(z) - z[y]
        e, total, zmax = _softmax_parts(z, kk, K, AXIS)
        picked = kk.to(tl.float32) == y
        out = zmax + tl.log(total) - tl.sum(tl.where(picked, z, 0.0), axis=AXIS, keep_dims=True)
    return out


@triton.jit
def _hit(z, y, kk, LOSS: tl.constexpr, K: tl.constexpr, KP: tl.constexpr, AXIS: tl.constexpr):
    """1.0 where the prediction is right: bce the sign of the logit, cross_entropy the
    argmax (the first of equal maxima, as torch.argmax)."""
    if LOSS == 2:
        zmax = tl.max(tl.where(kk < K, z, float("-inf")), axis=AXIS, keep_dims=True)
        first = tl.min(tl.where((kk < K) & (z == zmax), kk, KP), axis=AXIS, keep_dims=True)
        hit = (first.to(tl.float32) == y).to(tl.float32)
    else:
        hit = ((_logit(z, kk, KP, AXIS) > 0).to(tl.float32) == y).to(tl.float32)
    return hit


@triton.jit
def _loss_grad(z, y, kk, LOSS: tl.constexpr, K: tl.constexpr, KP: tl.constexpr,
               AXIS: tl.constexpr):
    """d loss / d z of each row (the batch's 1 / rows comes at the step), 0 on padding."""
    if LOSS == 0:
        g = (2.0 / K) * (z - y)
    elif LOSS == 1:
        g = tl.sigmoid(z) - y
        if KP > 1:
            g = tl.where(kk == 0, g, 0.0)
    else:
        e, total, zmax = _softmax_parts(z, kk, K, AXIS)
        g = e / total - (kk.to(tl.float32) == y).to(tl.float32)   # 0 on padding: e is 0
    return g


@triton.jit
def _finite(t):
    """1 where t is finite, else 0 (NaN and inf give NaN under t - t)."""
    return ((t - t) == 0.0).to(tl.int32)


@triton.jit
def _all_finite3(t):
    """t [X, Y, R] -> [R]: 1 where all of a lane's entries are finite."""
    return tl.min(tl.min(_finite(t), axis=0), axis=0)


@triton.jit
def _update(p, g, m_ptrs, v_ptrs, mask, take, scale, lr, wd_c, decay, b1, b2, eps,
            step_size, bc2s, mom, nest, OPT: tl.constexpr, SHARED: tl.constexpr):
    """One optimizer step of one tensor where ``take`` [R], in torch.optim's order. The
    optimizer state (m: momentum buffer or exp_avg, v: exp_avg_sq) stays in memory (cache)
    between steps, read and written only here: registers hold the weights and gradients.

    SHARED: other threads of the program load the entries this thread stores (the wide
    kernel, whose tensors are replicated across warps: one copy stores). A barrier then
    separates every thread's loads of this step from the stores, and the caller puts one
    before the step's first load, after the previous step's stores (kernels/NOTES.md,
    issue 30). The lane kernel gives each lane its own copy of the state: no barrier.

    sgd: g += wd p; buf = mom buf + g; p -= lr (nesterov ? g + mom buf : buf)   (m = buf)
    adam/adamw: p *= decay (1 - lr wd for adamw, else 1); g += wd p (adam);
        m = lerp(m, g, 1 - b1); v = lerp(v, g^2, 1 - b2);
        p -= step_size m / (sqrt(v) / bc2s + eps),  step_size = lr / (1 - b1^t)
    """
    g = g * scale + wd_c * p
    m = tl.load(m_ptrs, mask=mask, other=0.0)
    if OPT == 0:
        m = m * mom + g
        p2 = p - lr * tl.where(nest, g + mom * m, m)
    else:
        v = tl.load(v_ptrs, mask=mask, other=0.0)
        m = m + (1.0 - b1) * (g - m)
        v = v + (1.0 - b2) * (g * g - v)
        p2 = p * decay - step_size * (m / (tl.sqrt(v) / bc2s + eps))
    if SHARED:
        tl.debug_barrier()
    if OPT != 0:
        tl.store(v_ptrs, v, mask=mask)
    tl.store(m_ptrs, m, mask=mask)
    return tl.where(take, p2, p)


@triton.jit
def curve_offset(metric, RS, n_cols, run, col):
    """The offset of curves[metric, run, col] in curves [4, RS, n_cols], in int64: RS x
    n_cols passes 2**31 at about 2M runs with 1,100 evaluation columns, which the chunker
    allows on an 80 GB GPU (issue 30; tested on scalars under the interpreter)."""
    row = tl.cast(metric, tl.int64) * tl.cast(RS, tl.int64) + tl.cast(run, tl.int64)
    return row * tl.cast(n_cols, tl.int64) + col


@triton.jit
def _epoch_lr(lr0, e, ssize, log2g):
    """StepLR's learning rate in epoch e: lr0 * gamma ** (e // step_size) (ssize 0: constant)."""
    decays = tl.where(ssize > 0, e // tl.maximum(ssize, 1), 0)
    return tl.where(decays > 0, lr0 * tl.exp2(decays.to(tl.float32) * log2g), lr0)


@triton.jit
def _step_factors(lr, steps, log2b1, log2b2, OPT: tl.constexpr):
    """_update's step_size and bc2s for the step after ``steps``: Adam's bias corrections at
    step t (lr / (1 - b1^t), sqrt(1 - b2^t)); sgd's plain lr."""
    if OPT == 1:
        t = (steps + 1).to(tl.float32)
        step_size = lr / (1.0 - tl.exp2(t * log2b1))
        bc2s = tl.sqrt(1.0 - tl.exp2(t * log2b2))
    else:
        step_size = lr
        bc2s = lr
    return step_size, bc2s


# Per-launch integers are not specialized: Triton would compile again whenever one of them
# changes between 1, a multiple of 16 and neither (every evaluation interval, every sweep).
# PER_LAUNCH names them all; a test binds each at 1, 16 and 17 and reads the specialization.
PER_LAUNCH = ["o_e0", "o_epochs", "col", "n_cols", "RS", "n", "n_val", "e0", "e1",
              "eval_every"]


@triton.jit(do_not_specialize=PER_LAUNCH)
def train_kernel(
        # state in tiles, one per program: [RS / BLOCK_R, P, BLOCK_R] parameters and
        # optimizer state m and v, [RS / BLOCK_R, D, BLOCK_R] running statistics; [RS]
        # steps and diverged flags (RS: the runs, padded to whole programs)
        par_ptr, m_ptr, v_ptr, rmean_ptr, rvar_ptr, steps_ptr, div_ptr,
        # per-run constants [RS]
        bs_ptr, ep_ptr, lr_ptr, log2g_ptr, ssize_ptr, b1_ptr, b2_ptr, log2b1_ptr, log2b2_ptr,
        eps_ptr, mom_ptr, nest_ptr, wdc_ptr, wdd_ptr, oq_ptr,
        # data: x [n, D] and y [n, YK], each followed by the shuffled epochs' rows in their
        # order, [Q, o_epochs, n, D] and [Q, o_epochs, n, YK] for epochs o_e0, o_e0 + 1, ...;
        # the validation rows [n_val, D] and [n_val, YK]
        x_ptr, y_ptr, xv_ptr, yv_ptr, o_e0, o_epochs,
        # curves [4, RS, E]: train loss, val loss, train accuracy, val accuracy
        curve_ptr, col, n_cols,
        RS, n, n_val, e0, e1, eval_every,
        P: tl.constexpr, D: tl.constexpr, DP: tl.constexpr, OA: tl.constexpr, OAP: tl.constexpr,
        OB: tl.constexpr, OBP: tl.constexpr, K: tl.constexpr, KP: tl.constexpr,
        YK: tl.constexpr, YKP: tl.constexpr, DEPTH: tl.constexpr,
        OFF_N: tl.constexpr, OFF_A: tl.constexpr, OFF_B: tl.constexpr, OFF_C: tl.constexpr,
        ACT: tl.constexpr, LOSS: tl.constexpr, OPT: tl.constexpr, BN: tl.constexpr,
        SHUFFLED: tl.constexpr, UNROLL: tl.constexpr, SPLIT: tl.constexpr,
        BLOCK_R: tl.constexpr):
    """Trains epochs e0..e1-1 of runs [pid * BLOCK_R, ...) and evaluates those whose
    evaluation falls after epoch e1 into curve column ``col`` (none when col < 0).

    Layers: A = Linear(D, OA) (depth 0: the output, OA = K), B = Linear(OA, OB) (depth 1:
    the output, OB = K), C = Linear(OB, K). K outputs: mse's K targets (YK = K), or
    cross_entropy's K classes, or bce's one logit (YK = 1: y holds the class or label).
    OFF_*: each layer's weight entry in the state
    columns, the bias right after it; OFF_N: batchnorm's gamma, beta after it.
    SHUFFLED: some lane reads a shuffled copy of the rows. UNROLL: unrolling of the
    loop over the rows every lane has. SPLIT: lanes per run (a power of two dividing 32),
    each taking every SPLIT-th row of a batch; their gradients are summed at each step and
    every lane takes the same step, so the copies stay identical. Each lane reads and
    writes its own copy of the state (the tiles are [entries, BLOCK_R]): lanes of a run sit
    in different threads, and a copy that one wrote and another read at the next step
    would be a race (issue 30). Row offsets are int32: the host keeps n * D < 2**31.
    """
    RUNS: tl.constexpr = BLOCK_R // SPLIT          # runs per program
    pid = tl.program_id(0).to(tl.int64)             # runs x entries may pass 2**31
    lane = tl.arange(0, BLOCK_R)
    # A run's SPLIT lanes are RUNS apart. Side by side, they read consecutive rows, and
    # Triton 3.6 vectorized those loads and converted the row loop's tensors through shared
    # memory at every row (kernels/NOTES.md, v5).
    r = lane % RUNS                                 # the lane's run within the program
    k = lane // RUNS                                # and its share of each batch's rows
    lanes = pid * RUNS + r                          # the lane's run
    first = k == 0                                  # the lane that writes its run's results
    # this program's state tiles, a copy per lane
    par_ptr += pid * (P * BLOCK_R)
    m_ptr += pid * (P * BLOCK_R)
    v_ptr += pid * (P * BLOCK_R)
    rmean_ptr += pid * (D * BLOCK_R)
    rvar_ptr += pid * (D * BLOCK_R)
    bs = tl.load(bs_ptr + lanes)
    epochs = tl.load(ep_ptr + lanes)
    diverged = tl.load(div_ptr + lanes)
    steps = tl.load(steps_ptr + lanes)
    lr0 = tl.load(lr_ptr + lanes)
    log2g = tl.load(log2g_ptr + lanes)
    ssize = tl.load(ssize_ptr + lanes)      # 0: constant schedule
    b1 = tl.load(b1_ptr + lanes)
    b2 = tl.load(b2_ptr + lanes)
    log2b1 = tl.load(log2b1_ptr + lanes)
    log2b2 = tl.load(log2b2_ptr + lanes)
    eps = tl.load(eps_ptr + lanes)
    mom = tl.load(mom_ptr + lanes)
    nest = tl.load(nest_ptr + lanes) != 0
    wd_c = tl.load(wdc_ptr + lanes)
    wd_d = tl.load(wdd_ptr + lanes)
    oq = tl.load(oq_ptr + lanes)    # the lane's seed in the tables; -1 in order; -2 not now
    shuffled = oq >= 0
    training = (diverged == 0) & (oq > -2)

    d_idx = tl.arange(0, DP)
    d_in = d_idx < D
    a_in = (tl.arange(0, OAP) < OA)[:, None]
    b_in = (tl.arange(0, OBP) < OB)[:, None]
    kk = tl.arange(0, KP)[:, None]                  # the output's index
    yk = tl.arange(0, YKP)[:, None]                 # the target's

    # ---- load the state --------------------------------------------------------------
    pa, ma = _mat_offsets(OFF_A, OA, D, OAP, DP, lane, BLOCK_R)
    wa = tl.load(par_ptr + pa, mask=ma, other=0.0)
    qa, na = _vec_offsets(OFF_A + OA * D, OA, OAP, lane, BLOCK_R)
    ba = tl.load(par_ptr + qa, mask=na, other=0.0)
    if DEPTH >= 1:
        pb, mb = _mat_offsets(OFF_B, OB, OA, OBP, OAP, lane, BLOCK_R)
        wb = tl.load(par_ptr + pb, mask=mb, other=0.0)
        qb, nb = _vec_offsets(OFF_B + OB * OA, OB, OBP, lane, BLOCK_R)
        bb = tl.load(par_ptr + qb, mask=nb, other=0.0)
    else:   # stand-ins for the layers this depth lacks: _forward never reads them
        wb, bb = wa, ba
    if DEPTH >= 2:
        pc, mc = _mat_offsets(OFF_C, K, OB, KP, OBP, lane, BLOCK_R)
        wc = tl.load(par_ptr + pc, mask=mc, other=0.0)
        qc, nc = _vec_offsets(OFF_C + K * OB, K, KP, lane, BLOCK_R)
        bc = tl.load(par_ptr + qc, mask=nc, other=0.0)
    else:
        wc, bc = wa, ba
    if BN:
        qg, ng = _vec_offsets(OFF_N, D, DP, lane, BLOCK_R)
        gam = tl.load(par_ptr + qg, mask=ng, other=0.0)
        qn, nn = _vec_offsets(OFF_N + D, D, DP, lane, BLOCK_R)
        bet = tl.load(par_ptr + qn, mask=nn, other=0.0)
        qr, nr = _vec_offsets(0, D, DP, lane, BLOCK_R)
        rmean = tl.load(rmean_ptr + qr, mask=nr, other=0.0)
        rvar = tl.load(rvar_ptr + qr, mask=nr, other=1.0)

    # ---- train epochs e0 .. e1-1 -----------------------------------------------------------
    spe = (n + bs - 1) // bs
    for e in range(e0, e1):
        on = training & (e < epochs)
        lr = _epoch_lr(lr0, e, ssize, log2g)
        # the lane's rows of this epoch: the training rows, or its seed's copy in its order
        if SHUFFLED:
            row0 = tl.where(shuffled, (1 + oq * o_epochs + e - o_e0).to(tl.int64) * n, 0)
        else:
            row0 = tl.zeros([BLOCK_R], tl.int64)
        xe = x_ptr + row0 * D
        ye = y_ptr + row0 * YK
        for s in range(0, tl.max(tl.where(on, spe, 0), axis=0)):
            start = s * bs
            cnt = tl.where(on, tl.maximum(tl.minimum(bs, n - start), 0), 0)
            take = cnt > 0
            cmax = tl.max(cnt, axis=0)
            if BN:   # batch statistics over each lane's rows, summed then divided
                xsum = tl.zeros([DP, BLOCK_R], tl.float32)
                for j in range(0, (cmax + SPLIT - 1) // SPLIT):
                    i = j * SPLIT + k
                    valid = i < cnt
                    x = _batch_rows(xe, start + i, valid, d_idx, d_in, D)
                    xsum += x
                xsum = _split_sum2(xsum, SPLIT)
                rows_f = tl.maximum(cnt, 1).to(tl.float32)
                bmean = xsum / rows_f[None, :]
                xsq = tl.zeros([DP, BLOCK_R], tl.float32)
                for j in range(0, (cmax + SPLIT - 1) // SPLIT):
                    i = j * SPLIT + k
                    valid = i < cnt
                    x = _batch_rows(xe, start + i, valid, d_idx, d_in, D)
                    dev = tl.where(valid[None, :], x - bmean, 0.0)
                    xsq += dev * dev
                xsq = _split_sum2(xsq, SPLIT)
                bvar = xsq / rows_f[None, :]
                brstd = 1.0 / tl.sqrt(bvar + BN_EPS)
                g_gam = tl.zeros([DP, BLOCK_R], tl.float32)
                g_bet = tl.zeros([DP, BLOCK_R], tl.float32)
            g_wa = tl.zeros([OAP, DP, BLOCK_R], tl.float32)
            g_ba = tl.zeros([OAP, BLOCK_R], tl.float32)
            if DEPTH >= 1:
                g_wb = tl.zeros([OBP, OAP, BLOCK_R], tl.float32)
                g_bb = tl.zeros([OBP, BLOCK_R], tl.float32)
            if DEPTH >= 2:
                g_wc = tl.zeros([KP, OBP, BLOCK_R], tl.float32)
                g_bc = tl.zeros([KP, BLOCK_R], tl.float32)
            # Rows every lane has (no masks), then the rows only some lanes have. Lane k of a
            # run takes rows k, k + SPLIT, ... of the batch.
            jmin = tl.min(cnt, axis=0) // SPLIT
            jmax = (cmax + SPLIT - 1) // SPLIT
            for ragged in tl.static_range(2):
              for j in tl.range(jmin if ragged else 0, jmax if ragged else jmin,
                                loop_unroll_factor=1 if ragged else UNROLL):
                i = j * SPLIT + k
                pos = start + i
                if ragged:
                    valid = i < cnt
                    x = _batch_rows(xe, pos, valid, d_idx, d_in, D)
                    y = _targets(ye[None, :], pos[None, :], yk, valid[None, :], YK, YKP, True)
                else:
                    if DP == D:
                        x = tl.load(xe[None, :] + pos[None, :] * D + d_idx[:, None])
                    else:
                        x = tl.load(xe[None, :] + pos[None, :] * D + d_idx[:, None],
                                    mask=d_in[:, None], other=0.0)
                    y = _targets(ye[None, :], pos[None, :], yk, None, YK, YKP, False)
                if BN:
                    xh = (x - bmean) * brstd
                    h0 = xh * gam + bet
                else:
                    h0 = x
                z, aa, ha, ab, hb = _forward(h0, wa, ba, wb, bb, wc, bc, a_in, b_in, ACT, DEPTH)
                dz = _loss_grad(z, y, kk, LOSS, K, KP, 0)                          # [KP, R]
                if ragged:
                    dz = tl.where(valid[None, :], dz, 0.0)
                if DEPTH == 2:
                    g_wc += dz[:, None, :] * hb[None, :, :]
                    g_bc += dz
                    db = _dense_t(wc, dz) * _act_grad(ab, hb, ACT)
                else:
                    db = dz
                if DEPTH >= 1:
                    g_wb += db[:, None, :] * ha[None, :, :]
                    g_bb += db
                    da = _dense_t(wb, db) * _act_grad(aa, ha, ACT)
                else:
                    da = dz
                g_wa += da[:, None, :] * h0[None, :, :]
                g_ba += da
                if BN:
                    dh0 = _dense_t(wa, da)
                    g_gam += dh0 * xh
                    g_bet += dh0

            # ---- the optimizer step of the lanes that had rows ----------------------------
            g_wa = _split_sum3(g_wa, SPLIT)
            g_ba = _split_sum2(g_ba, SPLIT)
            if DEPTH >= 1:
                g_wb = _split_sum3(g_wb, SPLIT)
                g_bb = _split_sum2(g_bb, SPLIT)
            if DEPTH >= 2:
                g_wc = _split_sum3(g_wc, SPLIT)
                g_bc = _split_sum2(g_bc, SPLIT)
            if BN:
                g_gam = _split_sum2(g_gam, SPLIT)
                g_bet = _split_sum2(g_bet, SPLIT)
            scale = 1.0 / tl.maximum(cnt, 1).to(tl.float32)
            decay = 1.0 - lr * wd_d
            step_size, bc2s = _step_factors(lr, steps, log2b1, log2b2, OPT)   # at the lane's step
            wa = _update(wa, g_wa, m_ptr + pa, v_ptr + pa, ma & take,
                         take, scale, lr, wd_c, decay, b1, b2, eps, step_size, bc2s, mom,
                         nest, OPT, False)
            ba = _update(ba, g_ba, m_ptr + qa, v_ptr + qa, na & take,
                         take, scale, lr, wd_c, decay, b1, b2, eps, step_size, bc2s, mom,
                         nest, OPT, False)
            if DEPTH >= 1:
                wb = _update(wb, g_wb, m_ptr + pb, v_ptr + pb, mb & take,
                             take, scale, lr, wd_c, decay, b1, b2, eps, step_size, bc2s, mom,
                             nest, OPT, False)
                bb = _update(bb, g_bb, m_ptr + qb, v_ptr + qb, nb & take,
                             take, scale, lr, wd_c, decay, b1, b2, eps, step_size, bc2s, mom,
                             nest, OPT, False)
            if DEPTH >= 2:
                wc = _update(wc, g_wc, m_ptr + pc, v_ptr + pc, mc & take,
                             take, scale, lr, wd_c, decay, b1, b2, eps, step_size, bc2s, mom,
                             nest, OPT, False)
                bc = _update(bc, g_bc, m_ptr + qc, v_ptr + qc, nc & take,
                             take, scale, lr, wd_c, decay, b1, b2, eps, step_size, bc2s, mom,
                             nest, OPT, False)
            if BN:
                gam = _update(gam, g_gam, m_ptr + qg, v_ptr + qg, ng & take, take, scale, lr,
                              wd_c, decay, b1, b2, eps, step_size, bc2s, mom, nest, OPT, False)
                bet = _update(bet, g_bet, m_ptr + qn, v_ptr + qn, nn & take, take, scale, lr,
                              wd_c, decay, b1, b2, eps, step_size, bc2s, mom, nest, OPT, False)
                unbiased = bvar * (cnt.to(tl.float32) / tl.maximum(cnt - 1, 1).to(tl.float32))
                rmean = tl.where(take, rmean * (1.0 - BN_MOMENTUM) + bmean * BN_MOMENTUM, rmean)
                rvar = tl.where(take, rvar * (1.0 - BN_MOMENTUM) + unbiased * BN_MOMENTUM, rvar)
            steps += take.to(tl.int32)

    # ---- evaluate after epoch e1 -------------------------------------------------------
    lane0 = tl.zeros([BLOCK_R], tl.int32)        # scalars as lane vectors, for the masks
    due = ((lane0 + e1 % eval_every) == 0) | (epochs == e1)
    evaluated = training & (e1 <= epochs) & due & ((lane0 + col) >= 0)
    if BN:
        ersd = 1.0 / tl.sqrt(rvar + BN_EPS)
    for split in tl.static_range(2):
        if split == 0:
            xs, ys, rows = x_ptr, y_ptr, n
        else:
            xs, ys, rows = xv_ptr, yv_ptr, n_val
        loss_sum = tl.zeros([1, BLOCK_R], tl.float32)
        hits = tl.zeros([1, BLOCK_R], tl.float32)
        # lane k of a run takes rows k, k + SPLIT, ...
        todo = tl.where(tl.max(evaluated.to(tl.int32), axis=0) > 0, rows, 0)
        for j in range(0, (todo + SPLIT - 1) // SPLIT):
            i = j * SPLIT + k
            valid = i < rows
            x = tl.load(xs + i[None, :].to(tl.int64) * D + d_idx[:, None],
                        mask=valid[None, :] & d_in[:, None], other=0.0)
            y = _targets(ys, i[None, :].to(tl.int64), yk, valid[None, :], YK, YKP, True)
            if BN:
                h0 = (x - rmean) * ersd * gam + bet
            else:
                h0 = x
            z = _forward(h0, wa, ba, wb, bb, wc, bc, a_in, b_in, ACT, DEPTH)[0]
            loss_sum += tl.where(valid[None, :], _loss(z, y, kk, LOSS, K, KP, 0), 0.0)
            if LOSS != 0:
                hits += tl.where(valid[None, :], _hit(z, y, kk, LOSS, K, KP, 0), 0.0)
        loss_sum = _split_sum2(loss_sum, SPLIT)
        hits = _split_sum2(hits, SPLIT)
        if rows > 0:
            mean_loss = tl.sum(loss_sum, axis=0) / rows
            tl.store(curve_ptr + curve_offset(split, RS, n_cols, lanes, col), mean_loss,
                     mask=evaluated & first)
            if LOSS != 0:
                tl.store(curve_ptr + curve_offset(2 + split, RS, n_cols, lanes, col),
                         tl.sum(hits, axis=0) / rows, mask=evaluated & first)
            if split == 0:   # non-finite loss or weights: the run stops here
                ok = _finite(mean_loss) & _all_finite3(wa) & tl.min(_finite(ba), axis=0)
                if DEPTH >= 1:
                    ok = ok & _all_finite3(wb) & tl.min(_finite(bb), axis=0)
                if DEPTH >= 2:
                    ok = ok & _all_finite3(wc) & tl.min(_finite(bc), axis=0)
                if BN:
                    ok = ok & tl.min(_finite(gam), axis=0) & tl.min(_finite(bet), axis=0)
                    ok = ok & tl.min(_finite(rmean), axis=0) & tl.min(_finite(rvar), axis=0)
                diverged = tl.where(evaluated & (ok == 0), 1, diverged)

    # ---- store the state ---------------------------------------------------------------
    tl.store(steps_ptr + lanes, steps, mask=first)
    tl.store(div_ptr + lanes, diverged, mask=first)
    tl.store(par_ptr + pa, wa, mask=ma)
    tl.store(par_ptr + qa, ba, mask=na)
    if DEPTH >= 1:
        tl.store(par_ptr + pb, wb, mask=mb)
        tl.store(par_ptr + qb, bb, mask=nb)
    if DEPTH >= 2:
        tl.store(par_ptr + pc, wc, mask=mc)
        tl.store(par_ptr + qc, bc, mask=nc)
    if BN:
        tl.store(par_ptr + qg, gam, mask=ng)
        tl.store(par_ptr + qn, bet, mask=nn)
        tl.store(rmean_ptr + qr, rmean, mask=nr)
        tl.store(rvar_ptr + qr, rvar, mask=nr)
