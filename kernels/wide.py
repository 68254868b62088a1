"""The fused Triton kernel for wide models: one run per program, a batch's rows as the rows of
small matrix products.

``train_wide_kernel`` trains what ``mlp.train_kernel`` trains (the same runs, batches,
optimizers, evaluations and divergence rule, launched the same way by
trainer/backends/triton_backend.py), for models whose layers are too wide for one lane's registers:
up to 2 hidden layers of 64 units. Each program trains one run with all its warps. A
batch's rows are visited in tiles of ``BLOCK_M``; each layer of a tile is one ``tl.dot``
([rows, in] x [in, out]), forward and backward, so a layer's weights are read once per
tile instead of once per row, and a step's gradients are summed over the tiles in
registers. ``PRECISION`` is the products' input precision: "ieee" (fp32, the default: the
results match the reference as the lane kernel's do) or "tf32" (an opt-in: 10-bit
mantissas in the products, for tensor cores; not expected to match the reference within
the tests' tolerance).

Layers as in mlp.py: A = Linear(D, OA), B = Linear(OA, OB), C = Linear(OB, K); the last the
depth has is the output (OA = K at depth 0, OB = K at depth 1). Every dimension is padded
to a power of two, a hidden layer's to at least 16 (``tl.dot``'s smallest tile); a product
with a dimension under 16 (few inputs, few outputs) is a sum of broadcast products instead.
Padded units carry zero weights and are masked to zero after the activation, so they stay
zero. Rows of a tile past the batch's end read zeros and get no gradient.
"""

import triton
import triton.language as tl

from .mlp import (BN_EPS, BN_MOMENTUM, PER_LAUNCH, _act, _act_grad, _epoch_lr, _finite, _hit,
                  _loss, _loss_grad, _step_factors, _targets, _update, curve_offset)


@triton.jit
def _weight(ptr, off, OUT: tl.constexpr, IN: tl.constexpr, OUTP: tl.constexpr,
            INP: tl.constexpr):
    """Pointers [OUTP, INP] to a weight (OUT x IN, row-major from entry ``off`` of a run's
    state row) and the mask of its real entries."""
    o = tl.arange(0, OUTP)[:, None]
    i = tl.arange(0, INP)[None, :]
    return ptr + off + o * IN + i, (o < OUT) & (i < IN)


@triton.jit
def _vector(ptr, off, OUT: tl.constexpr, OUTP: tl.constexpr):
    """Pointers [OUTP] to a bias or batchnorm vector, and the mask of its real entries."""
    o = tl.arange(0, OUTP)
    return ptr + off + o, o < OUT


# A layer's products: tl.dot where every dimension is at least 16 (its smallest tile), else
# sums of broadcast products, so that 2 inputs or 1 output are not padded to 16 (at 2-32-32-1
# that padding was 40% of the FP32 instructions).
@triton.jit
def _mm_t(a, w, PRECISION: tl.constexpr):
    """a [M, IN] x w [OUT, IN] -> a w^T, [M, OUT]."""
    if a.shape[0] >= 16 and a.shape[1] >= 16 and w.shape[0] >= 16:
        out = tl.dot(a, tl.trans(w), input_precision=PRECISION)
    else:
        out = tl.sum(a[:, None, :] * w[None, :, :], axis=2)
    return out


@triton.jit
def _mm(d, w, PRECISION: tl.constexpr):
    """d [M, OUT] x w [OUT, IN] -> d w, [M, IN]."""
    if d.shape[0] >= 16 and d.shape[1] >= 16 and w.shape[1] >= 16:
        out = tl.dot(d, w, input_precision=PRECISION)
    else:
        out = tl.sum(d[:, :, None] * w[None, :, :], axis=1)
    return out


@triton.jit
def _mm_tn(d, h, PRECISION: tl.constexpr):
    """d [M, OUT], h [M, IN] -> d^T h, [OUT, IN] (a weight's gradient over M rows)."""
    if d.shape[0] >= 16 and d.shape[1] >= 16 and h.shape[1] >= 16:
        out = tl.dot(tl.trans(d), h, input_precision=PRECISION)
    else:
        out = tl.sum(d[:, :, None] * h[:, None, :], axis=0)
    return out


@triton.jit
def _tile_forward(h0, wa, ba, wb, bb, wc, bc, a_in, b_in, ACT: tl.constexpr,
                  DEPTH: tl.constexpr, PRECISION: tl.constexpr):
    """The outputs z [BLOCK_M, KP] of a tile of layer inputs h0 [BLOCK_M, DP], and the hidden
    pre-activations and activations the backward pass needs (stand-ins past the depth)."""
    aa = _mm_t(h0, wa, PRECISION) + ba[None, :]
    if DEPTH == 0:
        z = aa
        ha, ab, hb = aa, aa, aa
    else:
        ha = tl.where(a_in, _act(aa, ACT), 0.0)
        ab = _mm_t(ha, wb, PRECISION) + bb[None, :]
        if DEPTH == 1:
            z = ab
            hb = ab
        else:
            hb = tl.where(b_in, _act(ab, ACT), 0.0)
            z = _mm_t(hb, wc, PRECISION) + bc[None, :]
    return z, aa, ha, ab, hb


@triton.jit
def _tile_rows(xe, pos, valid, d, d_in, D):
    """Inputs x [BLOCK_M, DP] of the rows at batch positions ``pos`` of the epoch's rows
    ``xe``, 0 where not ``valid``."""
    return tl.load(xe + pos[:, None] * D + d[None, :], mask=valid[:, None] & d_in[None, :],
                   other=0.0)


# As train_kernel: per-launch integers are not specialized.
@triton.jit(do_not_specialize=PER_LAUNCH)
def train_wide_kernel(
        # state, one row per run (trainer/backends/triton_backend.py's tiles of one run): [RS, P]
        # parameters and optimizer state m and v, [RS, D] running statistics; [RS] steps
        # and diverged flags
        par_ptr, m_ptr, v_ptr, rmean_ptr, rvar_ptr, steps_ptr, div_ptr,
        # per-run constants [RS]
        bs_ptr, ep_ptr, lr_ptr, log2g_ptr, ssize_ptr, b1_ptr, b2_ptr, log2b1_ptr, log2b2_ptr,
        eps_ptr, mom_ptr, nest_ptr, wdc_ptr, wdd_ptr, oq_ptr,
        # data as train_kernel's: x and y, each followed by the shuffled epochs' rows, and the
        # validation rows
        x_ptr, y_ptr, xv_ptr, yv_ptr, o_e0, o_epochs,
        # curves [4, RS, E]: train loss, val loss, train accuracy, val accuracy
        curve_ptr, col, n_cols,
        RS, n, n_val, e0, e1, eval_every,
        P: tl.constexpr, D: tl.constexpr, DP: tl.constexpr, OA: tl.constexpr, OAP: tl.constexpr,
        OB: tl.constexpr, OBP: tl.constexpr, K: tl.constexpr, KP: tl.constexpr,
        YK: tl.constexpr, YKP: tl.constexpr, DEPTH: tl.constexpr,
        OFF_N: tl.constexpr, OFF_A: tl.constexpr, OFF_B: tl.constexpr, OFF_C: tl.constexpr,
        ACT: tl.constexpr, LOSS: tl.constexpr, OPT: tl.constexpr, BN: tl.constexpr,
        BLOCK_M: tl.constexpr, PRECISION: tl.constexpr):
    """Trains epochs e0..e1-1 of run ``program_id(0)`` and evaluates it into curve column
    ``col`` when its evaluation falls after epoch e1 (none when col < 0). DP, OAP, OBP, KP:
    the padded dimensions, each a power of two, a hidden layer's at least 16."""
    run = tl.program_id(0)
    base = run.to(tl.int64)
    par_ptr += base * P
    m_ptr += base * P
    v_ptr += base * P
    rmean_ptr += base * D
    rvar_ptr += base * D
    bs = tl.load(bs_ptr + run)
    epochs = tl.load(ep_ptr + run)
    diverged = tl.load(div_ptr + run)
    steps = tl.load(steps_ptr + run)
    lr0 = tl.load(lr_ptr + run)
    log2g = tl.load(log2g_ptr + run)
    ssize = tl.load(ssize_ptr + run)        # 0: constant schedule
    b1 = tl.load(b1_ptr + run)
    b2 = tl.load(b2_ptr + run)
    log2b1 = tl.load(log2b1_ptr + run)
    log2b2 = tl.load(log2b2_ptr + run)
    eps = tl.load(eps_ptr + run)
    mom = tl.load(mom_ptr + run)
    nest = tl.load(nest_ptr + run) != 0
    wd_c = tl.load(wdc_ptr + run)
    wd_d = tl.load(wdd_ptr + run)
    oq = tl.load(oq_ptr + run)      # the run's seed in the tables; -1 in order; -2 not now
    m_idx = tl.arange(0, BLOCK_M)
    training = (diverged == 0) & (oq > -2)

    d = tl.arange(0, DP)
    d_in = d < D
    a_in = (tl.arange(0, OAP) < OA)[None, :]
    b_in = (tl.arange(0, OBP) < OB)[None, :]
    kk = tl.arange(0, KP)[None, :]           # the output's index
    yk = tl.arange(0, YKP)[None, :]          # the target's

    # ---- load the state --------------------------------------------------------------
    pa, ma = _weight(0, OFF_A, OA, D, OAP, DP)
    wa = tl.load(par_ptr + pa, mask=ma, other=0.0)
    qa, na = _vector(0, OFF_A + OA * D, OA, OAP)
    ba = tl.load(par_ptr + qa, mask=na, other=0.0)
    if DEPTH >= 1:
        pb, mb = _weight(0, OFF_B, OB, OA, OBP, OAP)
        wb = tl.load(par_ptr + pb, mask=mb, other=0.0)
        qb, nb = _vector(0, OFF_B + OB * OA, OB, OBP)
        bb = tl.load(par_ptr + qb, mask=nb, other=0.0)
    else:   # stand-ins for the layers this depth lacks: _tile_forward never reads them
        wb, bb = wa, ba
    if DEPTH >= 2:
        pc, mc = _weight(0, OFF_C, K, OB, KP, OBP)
        wc = tl.load(par_ptr + pc, mask=mc, other=0.0)
        qc, nc = _vector(0, OFF_C + K * OB, K, KP)
        bc = tl.load(par_ptr + qc, mask=nc, other=0.0)
    else:
        wc, bc = wa, ba
    if BN:
        qg, ng = _vector(0, OFF_N, D, DP)
        gam = tl.load(par_ptr + qg, mask=ng, other=0.0)
        qn, nn = _vector(0, OFF_N + D, D, DP)
        bet = tl.load(par_ptr + qn, mask=nn, other=0.0)
        rmean = tl.load(rmean_ptr + d, mask=d_in, other=0.0)
        rvar = tl.load(rvar_ptr + d, mask=d_in, other=1.0)

    # ---- train epochs e0 .. e1-1 -----------------------------------------------------------
    spe = (n + bs - 1) // bs
    e_end = tl.where(training, tl.minimum(e1, epochs), e0)
    for e in range(e0, e_end):
        lr = _epoch_lr(lr0, e, ssize, log2g)
        # the run's rows of this epoch: the training rows, or its seed's copy in its order
        row0 = tl.where(oq >= 0, (1 + oq * o_epochs + e - o_e0).to(tl.int64) * n, 0)
        xe = x_ptr + row0 * D
        ye = y_ptr + row0 * YK
        for s in range(0, spe):
            start = s * bs
            cnt = tl.minimum(bs, n - start)           # > 0: every step has rows
            if BN:   # the batch's statistics, summed over its tiles then divided
                xsum = tl.zeros([DP], tl.float32)
                for t in range(0, cnt, BLOCK_M):
                    valid = t + m_idx < cnt
                    x = _tile_rows(xe, start + t + m_idx, valid, d, d_in, D)
                    xsum += tl.sum(x, axis=0)
                rows_f = tl.maximum(cnt, 1).to(tl.float32)
                bmean = xsum / rows_f
                xsq = tl.zeros([DP], tl.float32)
                for t in range(0, cnt, BLOCK_M):
                    valid = t + m_idx < cnt
                    x = _tile_rows(xe, start + t + m_idx, valid, d, d_in, D)
                    dev = tl.where(valid[:, None], x - bmean[None, :], 0.0)
                    xsq += tl.sum(dev * dev, axis=0)
                bvar = xsq / rows_f
                brstd = 1.0 / tl.sqrt(bvar + BN_EPS)
                g_gam = tl.zeros([DP], tl.float32)
                g_bet = tl.zeros([DP], tl.float32)
            g_wa = tl.zeros([OAP, DP], tl.float32)
            g_ba = tl.zeros([OAP], tl.float32)
            if DEPTH >= 1:
                g_wb = tl.zeros([OBP, OAP], tl.float32)
                g_bb = tl.zeros([OBP], tl.float32)
            if DEPTH >= 2:
                g_wc = tl.zeros([KP, OBP], tl.float32)
                g_bc = tl.zeros([KP], tl.float32)
            for t in range(0, cnt, BLOCK_M):
                valid = t + m_idx < cnt
                pos = start + t + m_idx
                x = _tile_rows(xe, pos, valid, d, d_in, D)
                y = _targets(ye, pos[:, None], yk, valid[:, None], YK, YKP, True)
                if BN:
                    xh = (x - bmean[None, :]) * brstd[None, :]
                    h0 = xh * gam[None, :] + bet[None, :]
                else:
                    h0 = x
                z, aa, ha, ab, hb = _tile_forward(h0, wa, ba, wb, bb, wc, bc, a_in, b_in, ACT,
                                                  DEPTH, PRECISION)
                dz = tl.where(valid[:, None], _loss_grad(z, y, kk, LOSS, K, KP, 1), 0.0)
                if DEPTH == 2:
                    g_wc += _mm_tn(dz, hb, PRECISION)
                    g_bc += tl.sum(dz, axis=0)
                    db = _mm(dz, wc, PRECISION) * _act_grad(ab, hb, ACT)
                else:
                    db = dz
                if DEPTH >= 1:
                    g_wb += _mm_tn(db, ha, PRECISION)
                    g_bb += tl.sum(db, axis=0)
                    da = _mm(db, wb, PRECISION) * _act_grad(aa, ha, ACT)
                else:
                    da = dz
                g_wa += _mm_tn(da, h0, PRECISION)
                g_ba += tl.sum(da, axis=0)
                if BN:
                    dh0 = _mm(da, wa, PRECISION)
                    g_gam += tl.sum(dh0 * xh, axis=0)
                    g_bet += tl.sum(dh0, axis=0)

            # ---- the optimizer step -------------------------------------------------------
            # The weights, biases, m and v are replicated across the program's warps, and
            # one copy of each entry stores it. Nothing else orders that store before
            # another warp's load at the next step (the barriers that tl.dot and the
            # reductions happen to emit are not promised), so: a barrier here, after the
            # previous step's stores, and one in _update between the loads and the stores
            # (SHARED). About 9 barriers a step, against thousands of instructions.
            tl.debug_barrier()
            scale = 1.0 / tl.maximum(cnt, 1).to(tl.float32)
            decay = 1.0 - lr * wd_d
            step_size, bc2s = _step_factors(lr, steps, log2b1, log2b2, OPT)
            wa = _update(wa, g_wa, m_ptr + pa, v_ptr + pa, ma, True, scale, lr, wd_c,
                         decay, b1, b2, eps, step_size, bc2s, mom, nest, OPT, True)
            ba = _update(ba, g_ba, m_ptr + qa, v_ptr + qa, na, True, scale, lr, wd_c,
                         decay, b1, b2, eps, step_size, bc2s, mom, nest, OPT, True)
            if DEPTH >= 1:
                wb = _update(wb, g_wb, m_ptr + pb, v_ptr + pb, mb, True, scale, lr, wd_c,
                             decay, b1, b2, eps, step_size, bc2s, mom, nest, OPT, True)
                bb = _update(bb, g_bb, m_ptr + qb, v_ptr + qb, nb, True, scale, lr, wd_c,
                             decay, b1, b2, eps, step_size, bc2s, mom, nest, OPT, True)
            if DEPTH >= 2:
                wc = _update(wc, g_wc, m_ptr + pc, v_ptr + pc, mc, True, scale, lr, wd_c,
                             decay, b1, b2, eps, step_size, bc2s, mom, nest, OPT, True)
                bc = _update(bc, g_bc, m_ptr + qc, v_ptr + qc, nc, True, scale, lr, wd_c,
                             decay, b1, b2, eps, step_size, bc2s, mom, nest, OPT, True)
            if BN:
                gam = _update(gam, g_gam, m_ptr + qg, v_ptr + qg, ng, True, scale, lr,
                              wd_c, decay, b1, b2, eps, step_size, bc2s, mom, nest, OPT, True)
                bet = _update(bet, g_bet, m_ptr + qn, v_ptr + qn, nn, True, scale, lr,
                              wd_c, decay, b1, b2, eps, step_size, bc2s, mom, nest, OPT, True)
                unbiased = bvar * (cnt.to(tl.float32) / tl.maximum(cnt - 1, 1).to(tl.float32))
                rmean = rmean * (1.0 - BN_MOMENTUM) + bmean * BN_MOMENTUM
                rvar = rvar * (1.0 - BN_MOMENTUM) + unbiased * BN_MOMENTUM
            steps += 1

    # ---- evaluate after epoch e1 -------------------------------------------------------
    due = (e1 % eval_every == 0) | (epochs == e1)
    evaluated = training & (e1 <= epochs) & due & (col >= 0)
    if BN:
        ersd = 1.0 / tl.sqrt(rvar + BN_EPS)
    for split in range(2):       # not unrolled: one copy of the forward pass compiles faster
        if split == 0:
            xs, ys, rows = x_ptr, y_ptr, n
        else:
            xs, ys, rows = xv_ptr, yv_ptr, n_val
        loss_sum = tl.zeros([BLOCK_M, 1], tl.float32)
        hits = tl.zeros([BLOCK_M, 1], tl.float32)
        for t in range(0, tl.where(evaluated, rows, 0), BLOCK_M):
            i = t + m_idx
            valid = i < rows
            x = tl.load(xs + i[:, None].to(tl.int64) * D + d[None, :],
                        mask=valid[:, None] & d_in[None, :], other=0.0)
            y = _targets(ys, i[:, None].to(tl.int64), yk, valid[:, None], YK, YKP, True)
            if BN:
                h0 = (x - rmean[None, :]) * ersd[None, :] * gam[None, :] + bet[None, :]
            else:
                h0 = x
            z = _tile_forward(h0, wa, ba, wb, bb, wc, bc, a_in, b_in, ACT, DEPTH, PRECISION)[0]
            loss_sum += tl.where(valid[:, None], _loss(z, y, kk, LOSS, K, KP, 1), 0.0)
            if LOSS != 0:
                hits += tl.where(valid[:, None], _hit(z, y, kk, LOSS, K, KP, 1), 0.0)
        if rows > 0:
            mean_loss = tl.sum(loss_sum) / rows
            tl.store(curve_ptr + curve_offset(split, RS, n_cols, base, col), mean_loss,
                     mask=evaluated)
            if LOSS != 0:
                tl.store(curve_ptr + curve_offset(2 + split, RS, n_cols, base, col),
                         tl.sum(hits) / rows, mask=evaluated)
            if split == 0:   # non-finite loss or weights: the run stops here
                ok = _finite(mean_loss) & tl.min(_finite(wa)) & tl.min(_finite(ba))
                if DEPTH >= 1:
                    ok = ok & tl.min(_finite(wb)) & tl.min(_finite(bb))
                if DEPTH >= 2:
                    ok = ok & tl.min(_finite(wc)) & tl.min(_finite(bc))
                if BN:
                    ok = ok & tl.min(_finite(gam)) & tl.min(_finite(bet))
                    ok = ok & tl.min(_finite(rmean)) & tl.min(_finite(rvar))
                diverged = tl.where(evaluated & (ok == 0), 1, diverged)

    # ---- store the state ---------------------------------------------------------------
    tl.store(steps_ptr + run, steps)
    tl.store(div_ptr + run, diverged)
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
        tl.store(rmean_ptr + d, rmean, mask=d_in)
        tl.store(rvar_ptr + d, rvar, mask=d_in)
