// Elementwise float math over host buffers, vectorised, for the host-side code of routing and
// statistics (softmax, log-sum-exp). Each result depends only on its input values — never on the
// pointer, the length, the position in the buffer or the thread count — so code that uses these
// stays bit-identical at any number of threads.
#pragma once

#include <cstddef>

namespace moe {

// y[i] = exp(x[i] - shift), i < n, and 0 where that is below the smallest normal float (so the
// same on every instruction set). y may equal x.
void vec_exp_shifted(float* y, const float* x, float shift, size_t n);

// y[i] = p[i] ln p[i] for p[i] > 0, and 0 for p[i] = 0 (the entropy's terms). y may equal p.
void vec_xlogx(float* y, const float* p, size_t n);

// log sum_i exp(x[i]) in double: max + log sum_i exp(x[i] - max), the exponentials vectorised,
// their sum in double in a fixed order. n >= 1.
double vec_logsumexp(const float* x, size_t n);
// The same for each of `rows` rows of n values (row-major): lse[r] = vec_logsumexp(x + r n, n),
// bit for bit; short rows are done many at a time.
void vec_logsumexp_rows(double* lse, const float* x, size_t rows, size_t n);

// Reductions in a fixed order that vectorises: value i goes to partial sum i % 16, and the 16
// partial sums are added in a fixed order at the end.
float vec_max(const float* x, size_t n);  // n >= 1
float vec_sum(const float* x, size_t n);
double vec_sum_double(const float* x, size_t n);  // accumulated in double
float vec_dot(const float* x, const float* y, size_t n);

}  // namespace moe
