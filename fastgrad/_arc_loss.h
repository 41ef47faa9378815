/* The dynamic oracle's cost for arc-standard (Goldberg, Sartorio & Satta 2014), in C
   for fastgrad/_arc_standard.pyx, which declares it once. The readable twin, and
   the tests' reference, is transitions.arc_loss in fastgrad/parser/transitions.py.

   A configuration's arc loss is the fewest wrong heads of any tree still reachable
   from it. Only two parts of the configuration matter:
     - the stack's words, top first (P of them);
     - the "right stack": the buffer words that can still take part in an arc, namely
       those whose gold head lies left of the buffer, or that a stack word or a right-
       stack word left of them needs as its head. Other buffer words' gold arcs are
       still all reachable.
   Together they are a sequence of P + Q nodes. The cost of the best tree over a span
   of that sequence, with a given node as the span's head, fills a table over spans,
   grown one node at a time from either side. A span grows by one node w in one of
   two ways: its head h takes w as a dependent, or h becomes w's dependent. Each costs
   1 when that arc is not gold. At the end, ROOT takes the whole span's head.

   Sentence positions are 1..n (0: ROOT); gold_head[base + c] is word c's gold head. */
#ifndef FASTGRAD_ARC_LOSS_H
#define FASTGRAD_ARC_LOSS_H

#include <stdint.h>

#include "_c_portability.h"

/* Span src grown by node w into cell, keeping each head's least cost. A span of i
   stack nodes and j right-stack nodes has its costs at nodes[0 .. i-1] and
   nodes[P .. P+j-1] (every other entry is never read): src's are the ranges
   [0, src_i) and [P, P + src_j). node_head[k] is node k's gold head.
   Branch-free: a head no tree of src reaches holds inf, and a cost built on it is at
   least inf, so taking the least with it leaves inf (a cell starts at inf and never
   rises above it): the same tables as skipping those heads, without a branch that
   mispredicts. With that branch, and gold_head and cell[w] read again on every pass
   (cell might have aliased them), arc_loss took nearly twice as long
   (bench/results/speed-intel-2core.md). w lies outside src's ranges. */
static inline void arc_loss_join_range(int32_t *restrict cell, const int32_t *restrict src,
                                       int32_t lo, int32_t hi, int32_t w,
                                       const int32_t *restrict nodes,
                                       const int32_t *restrict node_head) {
    const int32_t u = nodes[w], u_head = node_head[w];
    int32_t best_w = cell[w];
    for (int32_t k = lo; k < hi; ++k) {
        int32_t under = src[k] + (u_head != nodes[k]);        /* w under the head */
        cell[k] = under < cell[k] ? under : cell[k];
        int32_t over = src[k] + (node_head[k] != u);           /* the head under w */
        best_w = over < best_w ? over : best_w;
    }
    cell[w] = best_w;
}

static inline void arc_loss_join(int32_t *cell, const int32_t *src, int32_t src_i,
                                 int32_t src_j, int32_t P, int32_t w, const int32_t *nodes,
                                 const int32_t *node_head) {
    arc_loss_join_range(cell, src, 0, src_i, w, nodes, node_head);
    arc_loss_join_range(cell, src, P, P + src_j, w, nodes, node_head);
}

/* The arc loss of a configuration of a sentence of n words: above, the stack's words
   top first (P of them); next_word, the first buffer word (n + 1: none). scratch:
   at least 3 (n + 1) + 2 (n + 1) n ints. */
static int32_t arc_loss(int32_t base, int32_t n, const int32_t *above, int32_t P,
                        int32_t next_word, const int32_t *gold_head, int32_t *scratch) {
    int32_t *marked = scratch;                 /* words some left word needs as head */
    int32_t *right = scratch + (n + 1);        /* the right stack */
    int32_t *nodes = scratch + 2 * (n + 1);    /* the span's nodes: above, then right */
    int32_t *prev = scratch + 3 * (n + 1);     /* two diagonals of the table */
    int32_t Q = 0, inf = n + 1;
    for (int32_t c = 0; c <= n; ++c)
        marked[c] = 0;
    for (int32_t k = 0; k < P; ++k)            /* (a word already attached is no child) */
        if (gold_head[base + above[k]] >= next_word)
            marked[gold_head[base + above[k]]] = 1;
    for (int32_t b = next_word; b <= n; ++b) {
        if (gold_head[base + b] < next_word || marked[b]) {
            right[Q++] = b;
            if (gold_head[base + b] > b)
                marked[gold_head[base + b]] = 1;
        }
    }
    if (P + Q == 0)
        return 0;
    int32_t width = P + Q;
    int32_t *cur = prev + (P + 1) * width;
    int32_t *node_head = marked;                /* (marked is done with) */
    for (int32_t k = 0; k < P; ++k)
        nodes[k] = above[k];
    for (int32_t k = 0; k < Q; ++k)
        nodes[P + k] = right[k];
    for (int32_t k = 0; k < width; ++k)
        node_head[k] = gold_head[base + nodes[k]];
    /* Diagonal `total` = i + j: the spans of i stack nodes and j right-stack nodes.
       Cell (i, j) of a diagonal lies at i * width. */
    for (int32_t total = 1; total <= P + Q; ++total) {
        int32_t lo = total - Q > 0 ? total - Q : 0, hi = P < total ? P : total;
        for (int32_t i = lo; i <= hi; ++i) {
            int32_t j = total - i, *cell = cur + i * width;
            for (int32_t k = 0; k < i; ++k)      /* only the span's own nodes */
                cell[k] = inf;
            for (int32_t k = P; k < P + j; ++k)
                cell[k] = inf;
            if (total == 1) {
                cell[i == 1 ? 0 : P] = 0;
                continue;
            }
            if (i > 0)          /* the stack word below joins on the left */
                arc_loss_join(cell, prev + (i - 1) * width, i - 1, j, P, i - 1, nodes,
                              node_head);
            if (j > 0)          /* the next right-stack word joins on the right */
                arc_loss_join(cell, prev + i * width, i, j - 1, P, P + j - 1, nodes,
                              node_head);
        }
        int32_t *swap = prev;
        prev = cur;
        cur = swap;
    }
    int32_t best = inf, *whole = prev + P * width;   /* ROOT takes the span's head */
    for (int32_t k = 0; k < width; ++k) {
        if (whole[k] < inf) {
            int32_t cost = whole[k] + (node_head[k] != 0);
            if (cost < best)
                best = cost;
        }
    }
    return best;
}

#endif
