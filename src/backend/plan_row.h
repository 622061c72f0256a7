// One token's assignments put in slot order, written once for the CPU's plan_index_by_token and
// the CUDA kernel of the by-token index (one thread per token).
#pragma once

#include "backend/host_device.h"

namespace moe {

// Sorts the n assignments b[0..n) of one token by slot[b[i]] (insertion sort: a token has few
// assignments; slots are unique, so the order is the same whatever order b arrived in).
MOESIM_HOST_DEVICE inline void sort_by_slot(int* b, int n, const int* slot) {
    for (int i = 1; i < n; ++i) {
        const int v = b[i];
        int j = i;
        while (j > 0 && slot[b[j - 1]] > slot[v]) {
            b[j] = b[j - 1];
            --j;
        }
        b[j] = v;
    }
}

}  // namespace moe
