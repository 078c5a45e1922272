// jaxrnn's CPU kernels: XLA FFI custom calls into oneMKL, float32 and float64.
//
// - jaxrnn_blas_gemm: out[i] = op(a[i]) @ op(b[i]) for every index i of the
//   leading (batch) axes, op the identity or the transpose, row-major.
// - jaxrnn_blas_lstm: an LSTM's forward pass over a whole sequence.
//
// oneMKL runs single-threaded; the work is cut into bands (of a product's
// columns or rows, of the LSTM's batch rows) that run on XLA's own intra-op
// threads, so no second thread pool competes with XLA's for the cores.
//
// Built by jaxrnn/blas/__init__.py, linked to oneMKL's LP64, sequential and core
// libraries and loaded with RTLD_DEEPBIND, so that its oneMKL calls reach these
// libraries even where another copy of oneMKL is loaded (PyTorch's, whose
// symbols are global); nothing of them becomes global in turn.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
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
// oneMKL's packed matmuls: the right-hand matrix reordered once into the layout its
// kernels read, then multiplied by many left-hand ones (a loop's steps). The packed
// buffer lives within one call here: its contents are not position-independent.
size_t cblas_sgemm_pack_get_size(int identifier, int m, int n, int k);
size_t cblas_dgemm_pack_get_size(int identifier, int m, int n, int k);
void cblas_sgemm_pack(int layout, int identifier, int trans, int m, int n, int k, float alpha,
                      const float* src, int ld, float* dest);
void cblas_dgemm_pack(int layout, int identifier, int trans, int m, int n, int k, double alpha,
                      const double* src, int ld, double* dest);
void cblas_sgemm_compute(int layout, int trans_a, int trans_b, int m, int n, int k, const float* a,
                         int lda, const float* b, int ldb, float beta, float* c, int ldc);
void cblas_dgemm_compute(int layout, int trans_a, int trans_b, int m, int n, int k,
                         const double* a, int lda, const double* b, int ldb, double beta,
                         double* c, int ldc);
// oneMKL's vector tanh (its VML), to 1 ulp.
void vsTanh(int n, const float* a, float* r);
void vdTanh(int n, const double* a, double* r);
}

namespace {

constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112, kPacked = 151, kBMatrix = 162;

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

// Runs body(0), ..., body(count - 1) on this thread and XLA's intra-op threads.
// Every thread, this one included, takes indices until none is left; this thread
// then waits only for bodies already running. A helper the pool starts late finds
// no index left and returns without calling body (the shared state outlives this
// call for it), so body may refer to this frame, and nothing ever waits on a task
// that has not started.
void ParallelFor(ffi::ThreadPool& pool, int64_t count, std::function<void(int64_t)> body) {
  struct State {
    int64_t count;
    std::function<void(int64_t)> body;
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
    void Take() {
      for (int64_t p; (p = next.fetch_add(1)) < count;) {
        body(p);
        done.fetch_add(1, std::memory_order_release);
      }
    }
  };
  auto state = std::make_shared<State>();
  state->count = count;
  state->body = std::move(body);
  const int64_t helpers = std::min(std::max<int64_t>(1, pool.num_threads()), count) - 1;
  for (int64_t h = 0; h < helpers; ++h) pool.Schedule([state]() { state->Take(); });
  state->Take();
  while (state->done.load(std::memory_order_acquire) < count) std::this_thread::yield();
}

// out[i] = op(a[i]) @ op(b[i]) for each batch index i, each product cut into bands
// of columns (or of rows, when the output is taller than wide), one BLAS call each.
template <typename T>
void RunGemm(ffi::ThreadPool& pool, int ta, int tb, int64_t M, int64_t N, int64_t K, const T* a,
             int64_t lda, const std::vector<int64_t>& a_off, const T* b, int64_t ldb,
             const std::vector<int64_t>& b_off, T* out) {
  const bool split_n = N >= M;
  const int64_t bands = BandCount(M, N, K, std::max<int64_t>(1, pool.num_threads()));
  const int64_t count = static_cast<int64_t>(a_off.size()) * bands;
  ParallelFor(pool, count, [&](int64_t p) {
    const int64_t i = p / bands;
    auto [lo, hi] = Band(split_n ? N : M, bands, p % bands);
    const T* ap = a + a_off[i];
    const T* bp = b + b_off[i];
    T* cp = out + i * M * N;
    if (split_n) {
      CallGemm<T>(ta, tb, M, hi - lo, K, ap, lda, bp + (tb == kNoTrans ? lo : lo * ldb), ldb,
                  cp + lo, N);
    } else {
      CallGemm<T>(ta, tb, hi - lo, N, K, ap + (ta == kNoTrans ? lo * lda : lo), lda, bp, ldb,
                  cp + lo * N, N);
    }
  });
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
  const auto a_off = BatchOffsets(ad, od, a0 * a1);
  const auto b_off = BatchOffsets(bd, od, b0 * b1);
  const int ta = transpose_a ? kTrans : kNoTrans, tb = transpose_b ? kTrans : kNoTrans;
  switch (a.element_type()) {
    case ffi::DataType::F32:
      RunGemm<float>(pool, ta, tb, M, N, K, a.typed_data<float>(), a1, a_off,
                     b.typed_data<float>(), b1, b_off, out->typed_data<float>());
      break;
    case ffi::DataType::F64:
      RunGemm<double>(pool, ta, tb, M, N, K, a.typed_data<double>(), a1, a_off,
                      b.typed_data<double>(), b1, b_off, out->typed_data<double>());
      break;
    default:
      return ffi::Error::InvalidArgument("jaxrnn_blas_gemm: float32 or float64 only");
  }
  return ffi::Error::Success();
}

// A (k, n) right-hand matrix packed for m-row left-hand ones, freed with the object.
template <typename T>
class PackedMatrix {
 public:
  PackedMatrix(int64_t m, int64_t n, int64_t k, const T* b) : m_(m), n_(n), k_(k) {
    size_t bytes;
    if constexpr (std::is_same_v<T, float>) {
      bytes = cblas_sgemm_pack_get_size(kBMatrix, m, n, k);
    } else {
      bytes = cblas_dgemm_pack_get_size(kBMatrix, m, n, k);
    }
    data_.reset(static_cast<T*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64)));
    if constexpr (std::is_same_v<T, float>) {
      cblas_sgemm_pack(kRowMajor, kBMatrix, kNoTrans, m, n, k, 1.0f, b, n, data_.get());
    } else {
      cblas_dgemm_pack(kRowMajor, kBMatrix, kNoTrans, m, n, k, 1.0, b, n, data_.get());
    }
  }

  // c += a @ b for a of shape (m, k), c (m, n).
  void MultiplyAdd(const T* a, T* c) const {
    if constexpr (std::is_same_v<T, float>) {
      cblas_sgemm_compute(kRowMajor, kNoTrans, kPacked, m_, n_, k_, a, k_, data_.get(), n_, 1.0f,
                          c, n_);
    } else {
      cblas_dgemm_compute(kRowMajor, kNoTrans, kPacked, m_, n_, k_, a, k_, data_.get(), n_, 1.0,
                          c, n_);
    }
  }

 private:
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  int64_t m_, n_, k_;
  std::unique_ptr<T, Free> data_;
};

template <typename T>
void Tanh(int64_t n, const T* a, T* r) {
  if constexpr (std::is_same_v<T, float>) {
    vsTanh(n, a, r);
  } else {
    vdTanh(n, a, r);
  }
}

// The LSTM over a whole sequence, forward only (the fused path's pass when nothing
// is differentiated): a_t = x_t + b + h_{t-1} W_hh with x_t = projected[t],
// [i f g o] = [σ σ tanh σ](a_t), c_t = f c_{t-1} + i g, h_t = o tanh(c_t), and
// σ(a) = tanh(a/2)/2 + 1/2 as in fused.py. Past its length (valid[t, r] false) a
// sequence keeps its carry and outputs zeros. The rows of the batch are independent
// sequences, so each thread runs every step for a band of rows of its own: one
// (rows, H) x (H, 4H) matmul and the gates per step, no synchronisation between steps.
template <typename T>
void LstmForward(ffi::ThreadPool& pool, int64_t steps, int64_t B, int64_t H, const T* projected,
                 const T* w_hh, const T* bias, const T* h0, const T* c0, const bool* valid,
                 bool reverse, T* ys, T* h_out, T* c_out) {
  const int64_t G = 4 * H;
  const int64_t bands = std::max<int64_t>(1, std::min<int64_t>(pool.num_threads(), B));
  ParallelFor(pool, bands, [&](int64_t band) {
    const int64_t r0 = B * band / bands, n = B * (band + 1) / bands - r0;
    if (n == 0) return;
    std::vector<T> a(n * G), h(h0 + r0 * H, h0 + (r0 + n) * H), c(c0 + r0 * H, c0 + (r0 + n) * H);
    std::vector<T> c_new(n * H), tanh_c(n * H);
    const PackedMatrix<T> w(n, G, H, w_hh);  // packed once for all steps
    for (int64_t s = 0; s < steps; ++s) {
      const int64_t t = reverse ? steps - 1 - s : s;
      const T* x = projected + (t * B + r0) * G;
      for (int64_t r = 0; r < n; ++r) {
        for (int64_t j = 0; j < G; ++j) a[r * G + j] = x[r * G + j] + bias[j];
      }
      w.MultiplyAdd(h.data(), a.data());
      // σ of the i, f, o blocks through one tanh over the whole row: a/2 there.
      for (int64_t r = 0; r < n; ++r) {
        T* row = a.data() + r * G;
        for (int64_t j = 0; j < 2 * H; ++j) row[j] *= T(0.5);
        for (int64_t j = 3 * H; j < G; ++j) row[j] *= T(0.5);
      }
      Tanh<T>(n * G, a.data(), a.data());
      for (int64_t r = 0; r < n; ++r) {
        const T* row = a.data() + r * G;
        for (int64_t j = 0; j < H; ++j) {
          const T i = row[j] * T(0.5) + T(0.5), f = row[H + j] * T(0.5) + T(0.5);
          c_new[r * H + j] = f * c[r * H + j] + i * row[2 * H + j];
        }
      }
      Tanh<T>(n * H, c_new.data(), tanh_c.data());
      for (int64_t r = 0; r < n; ++r) {
        const T* row = a.data() + r * G;
        T* y = ys + (t * B + r0 + r) * H;
        if (valid != nullptr && !valid[t * B + r0 + r]) {
          std::fill(y, y + H, T(0));
          continue;
        }
        for (int64_t j = 0; j < H; ++j) {
          const T o = row[3 * H + j] * T(0.5) + T(0.5);
          c[r * H + j] = c_new[r * H + j];
          h[r * H + j] = y[j] = o * tanh_c[r * H + j];
        }
      }
    }
    std::copy(h.begin(), h.end(), h_out + r0 * H);
    std::copy(c.begin(), c.end(), c_out + r0 * H);
  });
}

ffi::Error Lstm(ffi::ThreadPool pool, ffi::AnyBuffer projected, ffi::AnyBuffer w_hh,
                ffi::AnyBuffer bias, ffi::AnyBuffer h0, ffi::AnyBuffer c0, ffi::AnyBuffer valid,
                ffi::Result<ffi::AnyBuffer> ys, ffi::Result<ffi::AnyBuffer> h_out,
                ffi::Result<ffi::AnyBuffer> c_out, bool reverse, bool has_valid) {
  auto pd = projected.dimensions();
  if (pd.size() != 3 || pd[2] % 4 != 0) {
    return ffi::Error::InvalidArgument("jaxrnn_blas_lstm: projected inputs (T, B, 4H) expected");
  }
  const int64_t steps = pd[0], B = pd[1], H = pd[2] / 4;
  auto wd = w_hh.dimensions(), hd = h0.dimensions(), cd = c0.dimensions();
  if (wd.size() != 2 || wd[0] != H || wd[1] != 4 * H || bias.element_count() != 4 * H ||
      hd.size() != 2 || hd[0] != B || hd[1] != H || cd.size() != 2 || cd[0] != B || cd[1] != H ||
      (has_valid && (valid.element_count() != steps * B ||
                     valid.element_type() != ffi::DataType::PRED))) {
    return ffi::Error::InvalidArgument("jaxrnn_blas_lstm: shapes do not match");
  }
  if (steps == 0 || B == 0 || H == 0) return ffi::Error::Success();
  const bool* mask = has_valid ? valid.typed_data<bool>() : nullptr;
  switch (projected.element_type()) {
    case ffi::DataType::F32:
      LstmForward<float>(pool, steps, B, H, projected.typed_data<float>(), w_hh.typed_data<float>(),
                         bias.typed_data<float>(), h0.typed_data<float>(), c0.typed_data<float>(),
                         mask, reverse, ys->typed_data<float>(), h_out->typed_data<float>(),
                         c_out->typed_data<float>());
      return ffi::Error::Success();
    case ffi::DataType::F64:
      LstmForward<double>(pool, steps, B, H, projected.typed_data<double>(),
                          w_hh.typed_data<double>(), bias.typed_data<double>(),
                          h0.typed_data<double>(), c0.typed_data<double>(), mask, reverse,
                          ys->typed_data<double>(), h_out->typed_data<double>(),
                          c_out->typed_data<double>());
      return ffi::Error::Success();
    default:
      return ffi::Error::InvalidArgument("jaxrnn_blas_lstm: float32 or float64 only");
  }
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

XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxrnn_blas_lstm, Lstm,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()  // projected (T, B, 4H)
                                  .Arg<ffi::AnyBuffer>()  // w_hh (H, 4H)
                                  .Arg<ffi::AnyBuffer>()  // b (4H,)
                                  .Arg<ffi::AnyBuffer>()  // h0 (B, H)
                                  .Arg<ffi::AnyBuffer>()  // c0 (B, H)
                                  .Arg<ffi::AnyBuffer>()  // valid (T, B) bool, if has_valid
                                  .Ret<ffi::AnyBuffer>()  // ys (T, B, H)
                                  .Ret<ffi::AnyBuffer>()  // h_T (B, H)
                                  .Ret<ffi::AnyBuffer>()  // c_T (B, H)
                                  .Attr<bool>("reverse")
                                  .Attr<bool>("has_valid"));
