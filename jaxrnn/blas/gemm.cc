// jaxrnn's CPU matmuls: an XLA FFI custom call into a CBLAS library (oneMKL).
//
// out[i] = op(a[i]) @ op(b[i]) for every index i of the leading (batch) axes,
// op being the identity or the transpose. Float32 and float64, row-major. The
// BLAS runs single-threaded; each product is split into column (or row)
// blocks that run on XLA's own intra-op threads, so no second thread pool
// competes with XLA's for the cores.
//
// Built by jaxrnn/blas/__init__.py, linked to oneMKL's LP64, sequential and core
// libraries and loaded with RTLD_DEEPBIND, so that its oneMKL calls reach these
// libraries even where another copy of oneMKL is loaded (PyTorch's, whose
// symbols are global); nothing of them becomes global in turn.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

// CBLAS's two matmuls (oneMKL's LP64 interface: 32-bit ints; the enums as ints).
extern "C" {
void cblas_sgemm(int layout, int trans_a, int trans_b, int m, int n, int k, float alpha,
                 const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc);
void cblas_dgemm(int layout, int trans_a, int trans_b, int m, int n, int k, double alpha,
                 const double* a, int lda, const double* b, int ldb, double beta, double* c,
                 int ldc);
}

namespace {

constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;

// Below about this many multiply-adds a block is not worth a thread.
constexpr int64_t kMinBlockWork = int64_t{1} << 20;
// Block edges fall on multiples of this many columns (rows): whole vector registers.
constexpr int64_t kAlign = 16;

template <typename T>
void CallGemm(int ta, int tb, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b,
              int64_t ldb, T* c, int64_t ldc) {
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(kRowMajor, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
  } else {
    cblas_dgemm(kRowMajor, ta, tb, m, n, k, 1.0, a, lda, b, ldb, 0.0, c, ldc);
  }
}

// Offsets (in elements) of an operand's matrix for each batch index of the output,
// broadcasting its size-1 axes (what ffi_call's vmap_method="expand_dims" passes).
std::vector<int64_t> BatchOffsets(ffi::Span<const int64_t> dims, ffi::Span<const int64_t> out_dims,
                                  int64_t matrix_size) {
  const size_t rank = out_dims.size() - 2;
  int64_t batch = 1;
  for (size_t d = 0; d < rank; ++d) batch *= out_dims[d];
  std::vector<int64_t> offsets(batch, 0);
  for (int64_t i = 0; i < batch; ++i) {
    int64_t rest = i, offset = 0, stride = matrix_size;
    for (size_t d = rank; d-- > 0;) {
      const int64_t index = rest % out_dims[d];
      rest /= out_dims[d];
      if (dims[d] != 1) offset += index * stride;
      stride *= dims[d];
    }
    offsets[i] = offset;
  }
  return offsets;
}

// How many bands (one per thread at most) a product is cut into: none thinner
// than a vector, none with less than kMinBlockWork multiply-adds.
int64_t BandCount(int64_t M, int64_t N, int64_t K, int64_t threads) {
  const int64_t side = std::max(M, N);
  return std::max<int64_t>(1, std::min({threads, M * N * K / kMinBlockWork, side / kAlign}));
}

// Band j of `count` over `side` rows or columns: [lo, hi), edges on whole vectors,
// the last band taking the remainder.
std::pair<int64_t, int64_t> Band(int64_t side, int64_t count, int64_t j) {
  const int64_t lo = side * j / count / kAlign * kAlign;
  const int64_t hi = j + 1 == count ? side : side * (j + 1) / count / kAlign * kAlign;
  return {lo, hi};
}

// One call's products cut into blocks, each one BLAS call on a band of columns
// (or rows) of one output matrix.
template <typename T>
struct Job {
  int ta, tb;
  int64_t M, N, K, lda, ldb;
  const T* a;
  const T* b;
  T* out;
  std::vector<int64_t> a_off, b_off;
  bool split_n;        // bands of columns, else of rows
  int64_t per_matrix;  // bands per output matrix
  int64_t count;       // blocks in all
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};

  void RunBlock(int64_t p) const {
    const int64_t i = p / per_matrix, j = p % per_matrix;
    auto [lo, hi] = Band(split_n ? N : M, per_matrix, j);
    const T* ap = a + a_off[i];
    T* cp = out + i * M * N;
    const T* bp = b + b_off[i];
    if (split_n) {
      CallGemm<T>(ta, tb, M, hi - lo, K, ap, lda, bp + (tb == kNoTrans ? lo : lo * ldb), ldb,
                  cp + lo, N);
    } else {
      CallGemm<T>(ta, tb, hi - lo, N, K, ap + (ta == kNoTrans ? lo * lda : lo), lda, bp, ldb,
                  cp + lo * N, N);
    }
  }

  void TakeBlocks() {
    for (int64_t p; (p = next.fetch_add(1)) < count;) {
      RunBlock(p);
      done.fetch_add(1, std::memory_order_release);
    }
  }
};

// Runs a job's blocks on this thread and XLA's intra-op threads. Every thread, this
// one included, takes blocks until none is left; this thread then waits only for
// blocks already running. A helper the pool starts late finds no block left and
// returns (the job outlives this call for it), so nothing ever waits on a task that
// has not started.
template <typename T>
void Run(ffi::ThreadPool& pool, std::shared_ptr<Job<T>> job) {
  job->count = static_cast<int64_t>(job->a_off.size()) * job->per_matrix;
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  const int64_t helpers = std::min(threads, job->count) - 1;
  for (int64_t h = 0; h < helpers; ++h) pool.Schedule([job]() { job->TakeBlocks(); });
  job->TakeBlocks();
  while (job->done.load(std::memory_order_acquire) < job->count) std::this_thread::yield();
}

template <typename T>
void RunGemm(ffi::ThreadPool& pool, int ta, int tb, int64_t M, int64_t N, int64_t K, const T* a,
             int64_t lda, std::vector<int64_t> a_off, const T* b, int64_t ldb,
             std::vector<int64_t> b_off, T* out) {
  auto job = std::make_shared<Job<T>>();
  job->ta = ta, job->tb = tb, job->M = M, job->N = N, job->K = K, job->lda = lda, job->ldb = ldb;
  job->a = a, job->b = b, job->out = out;
  job->a_off = std::move(a_off), job->b_off = std::move(b_off);
  job->split_n = N >= M;
  job->per_matrix = BandCount(M, N, K, std::max<int64_t>(1, pool.num_threads()));
  Run(pool, job);
}

ffi::Error Gemm(ffi::ThreadPool pool, ffi::AnyBuffer a, ffi::AnyBuffer b,
                ffi::Result<ffi::AnyBuffer> out, bool transpose_a, bool transpose_b) {
  auto ad = a.dimensions(), bd = b.dimensions(), od = out->dimensions();
  const size_t rank = od.size();
  if (rank < 2 || ad.size() != rank || bd.size() != rank) {
    return ffi::Error::InvalidArgument("jaxrnn_blas_gemm: operands of equal rank >= 2 expected");
  }
  const int64_t a0 = ad[rank - 2], a1 = ad[rank - 1], b0 = bd[rank - 2], b1 = bd[rank - 1];
  const int64_t M = transpose_a ? a1 : a0, K = transpose_a ? a0 : a1;
  const int64_t N = transpose_b ? b0 : b1;
  if ((transpose_b ? b1 : b0) != K || od[rank - 2] != M || od[rank - 1] != N) {
    return ffi::Error::InvalidArgument("jaxrnn_blas_gemm: shapes do not match");
  }
  for (size_t d = 0; d + 2 < rank; ++d) {
    if ((ad[d] != 1 && ad[d] != od[d]) || (bd[d] != 1 && bd[d] != od[d])) {
      return ffi::Error::InvalidArgument("jaxrnn_blas_gemm: batch axes do not broadcast");
    }
  }
  if (M == 0 || N == 0) return ffi::Error::Success();
  if (K == 0) {  // an empty sum (and a BLAS rejects a leading dimension of 0)
    std::memset(out->untyped_data(), 0, out->size_bytes());
    return ffi::Error::Success();
  }
  auto a_off = BatchOffsets(ad, od, a0 * a1);
  auto b_off = BatchOffsets(bd, od, b0 * b1);
  const int ta = transpose_a ? kTrans : kNoTrans, tb = transpose_b ? kTrans : kNoTrans;
  switch (a.element_type()) {
    case ffi::DataType::F32:
      RunGemm<float>(pool, ta, tb, M, N, K, a.typed_data<float>(), a1, std::move(a_off),
                 b.typed_data<float>(), b1, std::move(b_off), out->typed_data<float>());
      break;
    case ffi::DataType::F64:
      RunGemm<double>(pool, ta, tb, M, N, K, a.typed_data<double>(), a1, std::move(a_off),
                  b.typed_data<double>(), b1, std::move(b_off), out->typed_data<double>());
      break;
    default:
      return ffi::Error::InvalidArgument("jaxrnn_blas_gemm: float32 or float64 only");
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxrnn_blas_gemm, Gemm,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<bool>("transpose_a")
                                  .Attr<bool>("transpose_b"));
