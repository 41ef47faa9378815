/* The constants shared by the C row loops, the Cython kernels and Python.

   Defined here once: fastgrad/_kernels.pxd declares them for Cython (and exports
   the modes, paths and rules to Python as fastgrad._kernels.MODE_PROBA, ...), and
   the C in _row_loops.h switches on the same names. Never spell their values. */
#ifndef FASTGRAD_CONSTANTS_H
#define FASTGRAD_CONSTANTS_H

/* What run_step computes. */
enum fastgrad_mode {
    FASTGRAD_MODE_PROBA = 0,   /* forward; theta holds the probabilities */
    FASTGRAD_MODE_LOSS = 1,    /* forward and loss */
    FASTGRAD_MODE_GRAD = 2,    /* loss and every gradient, into the workspace */
    FASTGRAD_MODE_UPDATE = 3   /* loss and gradients, then every parameter updated by a rule */
};

/* Which products run_step takes (see choose_path in fastgrad/_step.py). */
enum fastgrad_path {
    FASTGRAD_PATH_DENSE = 0,     /* over the N*m gathered rows */
    FASTGRAD_PATH_FACTORED = 1   /* over the K distinct (slot, row) keys */
};

/* How MODE_UPDATE turns a gradient g into a parameter update (update_row_* in
   _row_loops.h; the Python side builds them in fastgrad/_optim.py). */
enum fastgrad_rule_kind {
    FASTGRAD_RULE_SGD = 0,       /* p -= lr (g + l2 p) */
    FASTGRAD_RULE_MOMENTUM = 1,  /* b = mu b + g;  p -= lr b */
    FASTGRAD_RULE_ADAGRAD = 2,   /* G += g^2;  p -= lr g / (sqrt(G) + eps)  (or / sqrt(G + eps)) */
    FASTGRAD_RULE_ADAM = 3       /* torch.optim.Adam on dense parameters, SparseAdam on rows of L */
};

/* The phases of one step, in the order run_step passes through them, timed by
   fastgrad._kernels.set_phase_timing (tools/phase_profile.py). */
enum fastgrad_phase {
    FASTGRAD_PHASE_GATHER = 0,
    FASTGRAD_PHASE_FIRST_PRODUCTS,
    FASTGRAD_PHASE_FIRST_SUMS,
    FASTGRAD_PHASE_OUTPUT_PRODUCT,
    FASTGRAD_PHASE_SOFTMAX,
    FASTGRAD_PHASE_MASK_BACKWARD,
    FASTGRAD_PHASE_DU,
    FASTGRAD_PHASE_SEGMENT_SUMS,
    FASTGRAD_PHASE_DW_DL,
    FASTGRAD_PHASE_GROUP_DL,
    FASTGRAD_PHASE_UPDATE_L,
    FASTGRAD_PHASE_UPDATE_DENSE,
    FASTGRAD_N_PHASES
};

static const char *const fastgrad_phase_names[FASTGRAD_N_PHASES] = {
    "gather rows of L", "first layer: products", "first layer: sums, bias, ReLU",
    "output product hU", "softmax and loss", "ReLU mask backward (δ1Uᵀ)", "dU = hᵀδ1",
    "segment sums of δ2", "dW and dL products (+ sums by slot)", "group dL rows",
    "update L rows (or sum dL)", "update W, b1, U, b2",
};

/* The optimizer rule as the C loops read it (filled from fastgrad._step.UpdateRule). */
typedef struct {
    int kind, eps_inside_sqrt;
    double lr, l2, momentum, eps, beta1, beta2;
    double dense_step, dense_denom_scale, sparse_step;  /* Adam's bias corrections */
} fastgrad_rule;

#endif
