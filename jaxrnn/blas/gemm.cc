// jaxrnn's CPU kernels: XLA FFI custom calls into oneMKL, float32 and float64.
//
// - jaxrnn_blas_gemm: out[i] = op(a[i]) @ op(b[i]) for every index i of the
//   leading (batch) axes, op the identity or the transpose, row-major.
// - jaxrnn_blas_lstm: an LSTM's forward pass over a whole sequence, its input
//   projection included, and for a training pass the backward pass's factors.
// - jaxrnn_blas_lstm_grad: the LSTM's backward loop over a whole sequence.
// - jaxrnn_blas_elman, jaxrnn_blas_elman_grad: an Elman cell's forward pass over
//   a whole sequence, its input projection included, and its backward loop.
// - jaxrnn_blas_gru, jaxrnn_blas_gru_grad: the GRU's (reset gate after the
//   matmul) forward pass, with its factors for a training pass, and its
//   backward loop.
//
// oneMKL runs single-threaded; the work is cut into bands (of a product's
// columns or rows, of a loop's hidden units or batch rows) that run on XLA's
// own intra-op threads, so no second thread pool competes with XLA's for the
// cores. On CPUs not Intel's the float32 products go to oneDNN's matmul instead
// (loaded at run time, where jaxrnn/blas/__init__.py finds it), on one thread too.
//
// Built by jaxrnn/blas/__init__.py, linked to oneMKL's LP64, sequential and core
// libraries and loaded with RTLD_DEEPBIND, so that its oneMKL calls reach these
// libraries even where another copy of oneMKL is loaded (PyTorch's, whose
// symbols are global); nothing of them becomes global in turn.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <pthread.h>
#include <sched.h>
#include <string>
#include <thread>
#include <tuple>
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

// oneDNN's float32 matmul (dnnl_sgemm: row-major, 'N'/'T', 64-bit sizes), where
// jaxrnn_use_onednn switched the float32 products to it, and the two calls of its
// OpenMP runtime that keep it on the calling thread. oneMKL takes a generic path
// on CPUs not Intel's; oneDNN compiles its kernels for the CPU it runs on (on an
// AMD EPYC (Zen 4) its products of a 256-unit LSTM's step ran 1.2-1.4x faster).
struct Onednn {
  int (*sgemm)(char, char, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
               int64_t, float, float*, int64_t);
  void (*set_threads)(int);
  int (*get_threads)();
};
std::atomic<const Onednn*> g_onednn{nullptr};

// c = a @ b + beta c through oneDNN, on this thread alone. OpenMP's thread count is
// a setting of the calling thread, and the OpenMP runtime may be PyTorch's too (one
// libgomp.so.1 serves both): it is put back after the product.
void OnednnSgemm(const Onednn& onednn, int ta, int tb, int64_t m, int64_t n, int64_t k,
                 const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                 int64_t ldc) {
  const int threads = onednn.get_threads();
  if (threads != 1) onednn.set_threads(1);
  const int failed = onednn.sgemm(ta == kTrans ? 'T' : 'N', tb == kTrans ? 'T' : 'N', m, n, k,
                                  1.0f, a, lda, b, ldb, beta, c, ldc);
  if (threads != 1) onednn.set_threads(threads);
  // Its checks refuse nothing the kernels pass; should they, oneMKL computes c.
  if (failed != 0) cblas_sgemm(kRowMajor, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}

template <typename T>
void CallGemm(int ta, int tb, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b,
              int64_t ldb, T* c, int64_t ldc) {
  if constexpr (std::is_same_v<T, float>) {
    if (const Onednn* onednn = g_onednn.load(std::memory_order_relaxed)) {
      return OnednnSgemm(*onednn, ta, tb, m, n, k, a, lda, b, ldb, 0.0f, c, ldc);
    }
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

// The bands of a loop cut by rows (the batch's rows, independent sequences): one
// per thread, none empty; band j's first row and row count, the rows shared out
// evenly (not on whole vectors, as Band's columns).
int64_t RowBandCount(ffi::ThreadPool& pool, int64_t B) {
  return std::max<int64_t>(1, std::min<int64_t>(pool.num_threads(), B));
}
std::pair<int64_t, int64_t> RowBandRows(int64_t B, int64_t count, int64_t j) {
  const int64_t r0 = B * j / count;
  return {r0, B * (j + 1) / count - r0};
}

// A helper thread's stay on a core other than the calling thread's (`cpu`, from
// sched_getcpu there). Woken by the calling thread, a helper of XLA's pool can be
// placed on the caller's own core and stay there for milliseconds while another
// idles, the two then taking turns on one core: on a 2-core VM, traced, every
// call of a loop that took twice its time had both on one core. If this thread
// is on `cpu`, it leaves it (its affinity less `cpu`) until the object's end,
// which puts its affinity back.
class OffCpu {
 public:
  explicit OffCpu(int cpu) {
    if (cpu < 0 || sched_getcpu() != cpu) return;
    if (pthread_getaffinity_np(pthread_self(), sizeof(before_), &before_) != 0) return;
    cpu_set_t without = before_;
    CPU_CLR(cpu, &without);
    moved_ = CPU_COUNT(&without) > 0 &&
             pthread_setaffinity_np(pthread_self(), sizeof(without), &without) == 0;
  }
  OffCpu(const OffCpu&) = delete;
  OffCpu& operator=(const OffCpu&) = delete;
  ~OffCpu() {
    if (moved_) pthread_setaffinity_np(pthread_self(), sizeof(before_), &before_);
  }

 private:
  cpu_set_t before_;
  bool moved_ = false;
};

// The shared state of work that this thread and helpers of XLA's intra-op pool
// take from (Take, run by each thread until no work is left for it). A helper
// that the pool starts late enters only while the state is open, and leaves the
// calling thread's core if the system put it there (OffCpu).
struct SharedWork {
  std::atomic<int64_t> inside{0};
  std::atomic<bool> closed{false};  // set by the calling thread once its own Take is done
  int caller_cpu = sched_getcpu();  // constructed on the calling thread
  virtual ~SharedWork() = default;
  virtual void Take() = 0;
  void Enter() {
    inside.fetch_add(1);  // sequentially consistent with `closed`: see Close
    if (!closed.load()) {
      const OffCpu off(caller_cpu);
      Take();
    }
    inside.fetch_sub(1);
  }
  // Either a thread entering sees `closed`, or this sees it inside and waits.
  void Close() {
    closed.store(true);
    while (inside.load() != 0) std::this_thread::yield();
  }
};

// Runs state->Take() on this thread and on as many of the pool's threads as there
// are pieces (`count`) beyond this thread's, and returns once no other thread is
// inside: a helper that starts later returns at once (the state outlives this
// call for it), so the work may refer to this frame, and nothing ever waits on a
// task that has not started.
void TakeTogether(ffi::ThreadPool& pool, int64_t count, const std::shared_ptr<SharedWork>& state) {
  const int64_t helpers = std::min<int64_t>(std::max<int64_t>(1, pool.num_threads()), count) - 1;
  for (int64_t i = 0; i < helpers; ++i) pool.Schedule([state]() { state->Enter(); });
  state->Take();
  state->Close();
}

// Runs body(0), ..., body(count - 1) on this thread and XLA's intra-op threads
// (TakeTogether): every thread, this one included, takes indices until none is left.
void ParallelFor(ffi::ThreadPool& pool, int64_t count, std::function<void(int64_t)> body) {
  struct State : SharedWork {
    int64_t count;
    std::function<void(int64_t)> body;
    std::atomic<int64_t> next{0};
    void Take() override {
      for (int64_t p; (p = next.fetch_add(1)) < count;) body(p);
    }
  };
  auto state = std::make_shared<State>();
  state->count = count;
  state->body = std::move(body);
  TakeTogether(pool, count, state);
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

// Whether `buffer` holds `count` elements.
bool Holds(const ffi::AnyBuffer& buffer, int64_t count) {
  return static_cast<int64_t>(buffer.element_count()) == count;
}

// Whether a loop's `valid` operand fits: (T, B) bools, or anything without has_valid.
bool ValidFits(const ffi::AnyBuffer& valid, bool has_valid, int64_t steps, int64_t B) {
  return !has_valid || (Holds(valid, steps * B) && valid.element_type() == ffi::DataType::PRED);
}

// Whether every buffer holds elements of `type`: a kernel reads all its float
// operands and results as one C++ type.
template <typename... Buffers>
bool SameType(ffi::DataType type, const Buffers&... buffers) {
  return ((buffers.element_type() == type) && ...);
}

// Copies `from` into `to`, buffers of one size: what a loop over no steps returns.
void CopyBuffer(const ffi::AnyBuffer& from, ffi::Result<ffi::AnyBuffer>& to) {
  std::memcpy(to->untyped_data(), from.untyped_data(), from.size_bytes());
}

// run(T{}) with T the C++ type of `type`, float32 or float64; any other type is
// an error naming the custom call.
template <typename Run>
ffi::Error ForFloatType(ffi::DataType type, const char* call, Run run) {
  switch (type) {
    case ffi::DataType::F32:
      run(float{});
      return ffi::Error::Success();
    case ffi::DataType::F64:
      run(double{});
      return ffi::Error::Success();
    default:
      return ffi::Error::InvalidArgument(std::string(call) + ": float32 or float64 only");
  }
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
  if (!SameType(a.element_type(), b, *out)) {
    return ffi::Error::InvalidArgument("jaxrnn_blas_gemm: operands of one float type expected");
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
  return ForFloatType(a.element_type(), "jaxrnn_blas_gemm", [&](auto zero) {
    using T = decltype(zero);
    RunGemm<T>(pool, ta, tb, M, N, K, a.typed_data<T>(), a1, a_off, b.typed_data<T>(), b1, b_off,
               out->typed_data<T>());
  });
}

// Memory the kernels take afresh on every call (packed weights, projected inputs),
// kept from call to call: a buffer of a few MiB that malloc maps anew costs the
// system's zeroing of every page on first touch (measured 0.35 ms a MiB), as much
// as several steps of the loop. Blocks given back are kept, up to kCachedBytes in
// all, and handed out again to requests of between half their size and their size.
constexpr size_t kCachedBytes = size_t{256} << 20;

class BlockCache {
 public:
  static BlockCache& Get() {
    static BlockCache* cache = new BlockCache;  // never destroyed: no exit-time order
    return *cache;
  }

  void* Take(size_t& bytes) {
    bytes = (bytes + 4095) / 4096 * 4096;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.lower_bound(bytes);
      if (it != free_.end() && it->first <= 2 * bytes) {
        bytes = it->first;
        void* block = it->second;
        free_.erase(it);
        cached_ -= bytes;
        return block;
      }
    }
    return std::aligned_alloc(64, bytes);
  }

  void GiveBack(void* block, size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cached_ + bytes <= kCachedBytes) {
        free_.emplace(bytes, block);
        cached_ += bytes;
        return;
      }
    }
    std::free(block);
  }

 private:
  std::mutex mutex_;
  std::multimap<size_t, void*> free_;  // by size
  size_t cached_ = 0;
};

// n uninitialised elements from BlockCache, given back with the object.
template <typename T>
class Scratch {
 public:
  Scratch() = default;
  explicit Scratch(int64_t n) : bytes_(std::max<int64_t>(1, n) * sizeof(T)) {
    data_ = static_cast<T*>(BlockCache::Get().Take(bytes_));
  }
  Scratch(Scratch&& other) noexcept { *this = std::move(other); }
  Scratch& operator=(Scratch&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(bytes_, other.bytes_);
    return *this;
  }
  ~Scratch() {
    if (data_ != nullptr) BlockCache::Get().GiveBack(data_, bytes_);
  }
  T* data() const { return data_; }

 private:
  T* data_ = nullptr;
  size_t bytes_ = 0;
};

// The distance between the rows of a copy of a right-hand matrix of n columns: n,
// or where the rows would start a multiple of 4 KiB apart, a cache line more.
// oneDNN reads a right-hand matrix in place (oneMKL packs it), and a column block
// of one whose rows are 4 KiB apart falls into a few sets of the cache: a step's
// (32, 512) x (512, 1024) product (a band of a 512-unit LSTM) ran at 85-103
// GFLOP/s with rows 1024 floats apart, 105-111 with 1040 (one Zen 4 core).
template <typename T>
int64_t PaddedRow(int64_t n) {
  constexpr int64_t kLine = 64 / sizeof(T);
  return (n * static_cast<int64_t>(sizeof(T))) % 4096 == 0 ? n + kLine : n;
}

// A (k, n) right-hand matrix packed for m-row left-hand ones, freed with the object:
// b's rows ld_b apart (n when 0), or with `transposed` b the (n, k) matrix whose
// transpose is packed (rows ld_b apart, k when 0). oneDNN packs as it multiplies:
// for it b is read in place (it must outlive the object), or copied once, transposed
// or to rows PaddedRow apart.
template <typename T>
class PackedMatrix {
 public:
  PackedMatrix(int64_t m, int64_t n, int64_t k, const T* b, int64_t ld_b = 0,
               bool transposed = false)
      : m_(m), n_(n), k_(k) {
    const int trans = transposed ? kTrans : kNoTrans;
    if (ld_b == 0) ld_b = transposed ? k : n;
    if constexpr (std::is_same_v<T, float>) {
      onednn_ = g_onednn.load(std::memory_order_relaxed);
      if (onednn_ != nullptr) {
        b_ = b, ld_b_ = ld_b;
        if (!transposed && PaddedRow<T>(ld_b) == ld_b) return;
        // Copied once here: transposed, as oneDNN's product with a transposed
        // right-hand side took 2.2x as long at a backward step's (32, 2048) x (2048,
        // 256), or with its rows PaddedRow apart.
        const int64_t ld = PaddedRow<T>(n);
        data_ = Scratch<T>(k * ld);
        T* to = data_.data();
        b_ = to, ld_b_ = ld;
        if (!transposed) {
          for (int64_t r = 0; r < k; ++r) std::copy(b + r * ld_b, b + r * ld_b + n, to + r * ld);
          return;
        }
        constexpr int64_t kTile = 32;
        for (int64_t c0 = 0; c0 < n; c0 += kTile) {
          const int64_t c1 = std::min(n, c0 + kTile);
          for (int64_t r0 = 0; r0 < k; r0 += kTile) {
            const int64_t r1 = std::min(k, r0 + kTile);
            for (int64_t c = c0; c < c1; ++c) {
              for (int64_t r = r0; r < r1; ++r) to[r * ld + c] = b[c * ld_b + r];
            }
          }
        }
        return;
      }
    }
    size_t bytes;
    if constexpr (std::is_same_v<T, float>) {
      bytes = cblas_sgemm_pack_get_size(kBMatrix, m, n, k);
    } else {
      bytes = cblas_dgemm_pack_get_size(kBMatrix, m, n, k);
    }
    data_ = Scratch<T>((bytes + sizeof(T) - 1) / sizeof(T));
    if constexpr (std::is_same_v<T, float>) {
      cblas_sgemm_pack(kRowMajor, kBMatrix, trans, m, n, k, 1.0f, b, ld_b, data_.data());
    } else {
      cblas_dgemm_pack(kRowMajor, kBMatrix, trans, m, n, k, 1.0, b, ld_b, data_.data());
    }
  }

  // c = a @ b + beta c for a of shape (m, k), c (m, n) with rows ld_c apart (n when 0).
  void Multiply(const T* a, T* c, T beta, int64_t ld_c = 0) const {
    if (ld_c == 0) ld_c = n_;
    if constexpr (std::is_same_v<T, float>) {
      if (onednn_ != nullptr) {
        return OnednnSgemm(*onednn_, kNoTrans, kNoTrans, m_, n_, k_, a, k_, b_, ld_b_, beta, c,
                           ld_c);
      }
      cblas_sgemm_compute(kRowMajor, kNoTrans, kPacked, m_, n_, k_, a, k_, data_.data(), n_, beta,
                          c, ld_c);
    } else {
      cblas_dgemm_compute(kRowMajor, kNoTrans, kPacked, m_, n_, k_, a, k_, data_.data(), n_, beta,
                          c, ld_c);
    }
  }

 private:
  int64_t m_, n_, k_;
  Scratch<T> data_;  // oneMKL's packed b, or for oneDNN b copied
  const Onednn* onednn_ = nullptr;  // float32 through oneDNN: b_ is b, (k, n), ld_b_ apart
  const T* b_ = nullptr;
  int64_t ld_b_ = 0;
};

// Hidden units [u0, u0 + n) of a (k, gates H) weight of a cell's gates (the LSTM's
// [i f g o]): the band's columns of each gate block, packed straight from the
// weight (no copy of it), for m-row left-hand ones. A product writes gate g into
// slot slot_of[g] of c's rows of `slots` n, columns [slot n, (slot + 1) n): the
// gates' own order, or for the GRU's w_hh [r z n] into slots [0 1 3] of [r z n_x
// n_h]. Slots below `shared` (which an earlier product has filled: the input
// projection) are added to, the others overwritten. Gates whose slots follow on
// and are alike (added to or not) share one pack and one product: one (m, k) x
// (k, width n) product runs 1.3-1.6x faster than `width` of (k, n) at the sizes of
// a band of a 256-unit LSTM (measured with oneMKL on an AMD EPYC). In a band of
// all H units their columns follow on in w; in a narrower band they are gathered
// first, into rows PaddedRow apart.
template <typename T>
class GateBand {
 public:
  GateBand(int64_t m, int64_t k, int64_t H, int64_t u0, int64_t n, int64_t gates, const T* w,
           const std::vector<int64_t>& slot_of, int64_t slots, int64_t shared)
      : n_(n), slots_(slots) {
    const int64_t ld_w = gates * H;
    for (int64_t g = 0; g < gates;) {
      int64_t width = 1;
      while (g + width < gates && slot_of[g + width] == slot_of[g] + width &&
             (slot_of[g + width] < shared) == (slot_of[g] < shared)) {
        ++width;
      }
      const bool add = slot_of[g] < shared;
      if (n == H || width == 1) {  // the columns follow on in w
        runs_.push_back({slot_of[g], add, PackedMatrix<T>(m, width * n, k, w + g * H + u0, ld_w)});
      } else {  // gather the gates' columns [u0, u0 + n) side by side: (k, width n)
        const int64_t ld = PaddedRow<T>(width * n);
        Scratch<T> gathered(k * ld);
        for (int64_t r = 0; r < k; ++r) {
          for (int64_t b = 0; b < width; ++b) {
            const T* from = w + r * ld_w + (g + b) * H + u0;
            std::copy(from, from + n, gathered.data() + r * ld + b * n);
          }
        }
        PackedMatrix<T> pack(m, width * n, k, gathered.data(), ld);  // may read it in place
        runs_.push_back({slot_of[g], add, std::move(pack), std::move(gathered)});
      }
      g += width;
    }
  }

  // c = a @ band (+ c in the shared slots), a (m, k), c (m, slots n).
  void Multiply(const T* a, T* c) const {
    for (const Run& run : runs_) {
      run.pack.Multiply(a, c + run.slot * n_, run.add ? T(1) : T(0), slots_ * n_);
    }
  }

 private:
  struct Run {
    int64_t slot;
    bool add;
    PackedMatrix<T> pack;
    Scratch<T> gathered;  // the gathered columns that pack may read
  };
  int64_t n_, slots_;
  std::vector<Run> runs_;
};

// The slots of a cell's gates: its input projection's, in order, and its hidden
// product's (Cell::kHiddenSlots).
inline std::vector<int64_t> InOrder(int64_t gates) {
  std::vector<int64_t> slots(gates);
  for (int64_t g = 0; g < gates; ++g) slots[g] = g;
  return slots;
}

template <typename Cell>
std::vector<int64_t> HiddenSlots() {
  return std::vector<int64_t>(std::begin(Cell::kHiddenSlots), std::end(Cell::kHiddenSlots));
}

// float32 tanh to about 1.5 ulp, without branches so that the compiler vectorises
// the loop: Cephes' tanhf, x + x³P(x²) below |x| = 0.625 and 1 - 2/(e^{2|x|} + 1)
// above, e^y as 2^n e^r (Cody-Waite's two-part ln 2, Cephes' expf polynomial).
// oneMKL's vsTanh takes a generic path on CPUs not Intel's: 210-290 µs for
// 82,000 values on an AMD EPYC (Zen 4), against 32 µs on a Xeon; this, 64 there.
void OwnTanh(int64_t n, const float* __restrict a, float* __restrict r) {
  for (int64_t i = 0; i < n; ++i) {
    const float x = a[i], z = std::fabs(x), s = x * x;
    const float p =
        ((((-5.70498872745e-3f * s + 2.06390887954e-2f) * s - 5.37397155531e-2f) * s +
          1.33314422036e-1f) * s - 3.33332819422e-1f) * s * z + z;
    // tanh(10) is 1 in float32; a NaN becomes 20 here (and is put back below).
    const float y = 2.0f * z < 20.0f ? 2.0f * z : 20.0f;
    const float k = std::floor(y * 1.44269504088896341f + 0.5f);  // y / ln 2, rounded
    const float t = (y - k * 0.693359375f) + k * 2.12194440e-4f;  // y - k ln 2
    const float e =
        (((((1.9875691500e-4f * t + 1.3981999507e-3f) * t + 8.3334519073e-3f) * t +
           4.1665795894e-2f) * t + 1.6666665459e-1f) * t + 5.0000001201e-1f) * t * t +
        t + 1.0f;
    const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;  // 2^k, k in [0, 29]
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    const float large = 1.0f - 2.0f / (e * scale + 1.0f);
    const float magnitude = z < 0.625f ? p : large;
    r[i] = x != x ? x : std::copysign(magnitude, x);  // -0 stays -0
  }
}

// Whether oneMKL's vector tanh is the fast one here: on Intel's CPUs.
const bool kIntelCpu = [] {
  __builtin_cpu_init();
  return __builtin_cpu_is("intel") != 0;
}();

template <typename T>
void Tanh(int64_t n, const T* a, T* r) {
  if constexpr (std::is_same_v<T, float>) {
    if (kIntelCpu) {
      vsTanh(n, a, r);
    } else {
      OwnTanh(n, a, r);
    }
  } else {
    vdTanh(n, a, r);
  }
}

// rows x n elements from src (rows ld_src apart) to dst (rows ld_dst apart): a band's
// columns of a (B, H) matrix in or out of the band's own (B, n).
template <typename T>
void CopyRows(int64_t rows, int64_t n, const T* src, int64_t ld_src, T* dst, int64_t ld_dst) {
  for (int64_t r = 0; r < rows; ++r) {
    std::copy(src + r * ld_src, src + r * ld_src + n, dst + r * ld_dst);
  }
}

// One step's gates for n rows, from a + bias = the pre-activations [i f g o] (a
// (n, 4H), bias (4H)): c_new = σ(f) c + σ(i) tanh(g), tanh_c = tanh(c_new); a is
// overwritten, its o block left as tanh(o/2) for the caller's σ(o) = tanh(o/2)/2 +
// 1/2. Plain loops over rows that the compiler vectorises; oneMKL's vector tanh for
// the rest.
template <typename T>
void Gates(int64_t n, int64_t H, T* a, const T* bias, const T* c, T* c_new, T* tanh_c) {
  const int64_t G = 4 * H;
  const T* __restrict b = bias;
  for (int64_t r = 0; r < n; ++r) {  // σ's argument a/2 in the i, f and o blocks
    T* __restrict row = a + r * G;
    for (int64_t j = 0; j < 2 * H; ++j) row[j] = (row[j] + b[j]) * T(0.5);
    for (int64_t j = 2 * H; j < 3 * H; ++j) row[j] += b[j];
    for (int64_t j = 3 * H; j < G; ++j) row[j] = (row[j] + b[j]) * T(0.5);
  }
  Tanh<T>(n * G, a, a);
  for (int64_t r = 0; r < n; ++r) {
    const T* __restrict i = a + r * G;
    const T* __restrict f = i + H;
    const T* __restrict g = i + 2 * H;
    const T* __restrict c_r = c + r * H;
    T* __restrict out = c_new + r * H;
    for (int64_t j = 0; j < H; ++j) {
      out[j] = (f[j] * T(0.5) + T(0.5)) * c_r[j] + (i[j] * T(0.5) + T(0.5)) * g[j];
    }
  }
  Tanh<T>(n * H, c_new, tanh_c);
}

// The backward pass's factors for n rows of m hidden units, from one step's gates
// as Gates leaves them (a, rows of 4m), the cell states before (c_prev) and
// tanh(c_new): k = [g σ'(i), c_prev σ'(f), σ(i) tanh'(g), tanh(c) σ'(o)],
// k_c = σ(o) tanh'(tanh(c)), f = σ(f), with σ' = σ (1 - σ) and tanh' = 1 - tanh².
// k's gate blocks lie H apart in its rows of 4H; k_c's and f's rows are H long.
template <typename T>
void Factors(int64_t n, int64_t m, int64_t H, const T* a, const T* c_prev, const T* tanh_c, T* k,
             T* k_c, T* f) {
  for (int64_t r = 0; r < n; ++r) {
    const T* __restrict row = a + r * 4 * m;
    const T* __restrict cp = c_prev + r * m;
    const T* __restrict tc = tanh_c + r * m;
    T* __restrict kr = k + r * 4 * H;
    T* __restrict kcr = k_c + r * H;
    T* __restrict fr = f + r * H;
    for (int64_t u = 0; u < m; ++u) {
      const T i = row[u] * T(0.5) + T(0.5), fg = row[m + u] * T(0.5) + T(0.5);
      const T g = row[2 * m + u], o = row[3 * m + u] * T(0.5) + T(0.5);
      kr[u] = g * (i * (T(1) - i));
      kr[H + u] = cp[u] * (fg * (T(1) - fg));
      kr[2 * H + u] = i * (T(1) - g * g);
      kr[3 * H + u] = tc[u] * (o * (T(1) - o));
      kcr[u] = o * (T(1) - tc[u] * tc[u]);
      fr[u] = fg;
    }
  }
}

// The new states of n rows of m hidden units, after Gates and from its a and tanh_c:
// h = σ(o) tanh(c_new) into h and the outputs y (both with rows H apart), and
// c_new becoming c (by swapping the buffers when every row is valid). A row past
// its length (valid[r] false, valid given) keeps its c and its h (copied from
// h_prev where that is another buffer) and outputs zeros. h may be y itself.
template <typename T>
void NewStates(int64_t n, int64_t m, int64_t H, const T* a, const T* tanh_c, const bool* valid,
               const T* h_prev, T* h, T* y, std::vector<T>& c, std::vector<T>& c_new) {
  for (int64_t r = 0; r < n; ++r) {
    T* __restrict hr = h + r * H;
    T* yr = y + r * H;
    if (valid != nullptr && !valid[r]) {
      if (h_prev != h) std::copy(h_prev + r * H, h_prev + r * H + m, hr);
      std::fill(yr, yr + m, T(0));
      continue;
    }
    const T* __restrict o = a + r * 4 * m + 3 * m;  // tanh(o/2), by Gates
    const T* __restrict tc = tanh_c + r * m;
    for (int64_t u = 0; u < m; ++u) hr[u] = (o[u] * T(0.5) + T(0.5)) * tc[u];
    if (yr != hr) std::copy(hr, hr + m, yr);
    if (valid != nullptr) {
      std::copy(c_new.data() + r * m, c_new.data() + (r + 1) * m, c.data() + r * m);
    }
  }
  if (valid == nullptr) std::swap(c, c_new);
}

// What an LSTM step does after its matmuls, for `rows` rows of the batch from r0
// and n hidden units from u0: the gates (the bias added), the new states, and for
// a differentiated pass (out.k not null) the backward pass's factors; each band of
// a loop keeps its cells' states in a State. Where it writes: ys (T, B, H), the
// final h and c (B, H), and the factors (fused.py's _lstm_grad_factors): k (T, B,
// 4H), k_c and f (T, B, H), or null.
template <typename T>
struct LstmCell {
  static constexpr int64_t kGates = 4, kSlots = 4;
  static constexpr int64_t kHiddenSlots[] = {0, 1, 2, 3};
  int64_t B, H;
  const T* c0;
  T *c_last, *k, *k_c, *f;

  struct State {
    std::vector<T> c, c_new, tanh_c;
  };

  State Start(int64_t r0, int64_t rows, int64_t u0, int64_t n) const {
    State state{std::vector<T>(rows * n), std::vector<T>(rows * n), std::vector<T>(rows * n)};
    CopyRows<T>(rows, n, c0 + r0 * H + u0, H, state.c.data(), n);
    return state;
  }

  // a: the step's (rows, 4n) products, overwritten; h_prev, h and y: rows H apart.
  void Step(State& state, int64_t t, int64_t r0, int64_t rows, int64_t u0, int64_t n, T* a,
            const T* bias, const bool* valid, const T* h_prev, T* h, T* y) const {
    Gates(rows, n, a, bias, state.c.data(), state.c_new.data(), state.tanh_c.data());
    if (k != nullptr) {
      const int64_t at = t * B + r0;
      Factors<T>(rows, n, H, a, state.c.data(), state.tanh_c.data(), k + at * 4 * H + u0,
                 k_c + at * H + u0, f + at * H + u0);
    }
    NewStates<T>(rows, n, H, a, state.tanh_c.data(), valid, h_prev, h, y, state.c, state.c_new);
  }

  void Finish(const State& state, int64_t r0, int64_t rows, int64_t u0, int64_t n) const {
    CopyRows<T>(rows, n, state.c.data(), n, c_last + r0 * H + u0, H);
  }
};

// The Elman cells' activations the kernel has, as jaxrnn_blas_elman's attribute.
enum class Activation : int64_t { kTanh = 0, kRelu = 1, kSigmoid = 2 };

// What an Elman step does after its matmul: h = act(a + b), σ(a) = tanh(a/2)/2 +
// 1/2 as for the LSTM's gates. A row past its length keeps its h and outputs zeros.
// h may be y itself; where every row is valid and h's rows are whole (n = H), the
// activation is written straight into h, not through a.
template <typename T>
struct ElmanCell {
  static constexpr int64_t kGates = 1, kSlots = 1;
  static constexpr int64_t kHiddenSlots[] = {0};
  int64_t H;
  Activation activation;

  struct State {};

  State Start(int64_t, int64_t, int64_t, int64_t) const { return {}; }

  void Step(State&, int64_t, int64_t, int64_t rows, int64_t, int64_t n, T* a, const T* bias,
            const bool* valid, const T* h_prev, T* h, T* y) const {
    const T* __restrict b = bias;
    for (int64_t r = 0; r < rows; ++r) {
      T* __restrict row = a + r * n;
      if (activation == Activation::kSigmoid) {  // σ's argument a/2
        for (int64_t u = 0; u < n; ++u) row[u] = (row[u] + b[u]) * T(0.5);
      } else {
        for (int64_t u = 0; u < n; ++u) row[u] += b[u];
      }
    }
    const bool straight = valid == nullptr && n == H && activation != Activation::kRelu;
    if (activation != Activation::kRelu) Tanh<T>(rows * n, a, straight ? h : a);
    for (int64_t r = 0; r < rows; ++r) {
      T* hr = h + r * H;
      T* yr = y + r * H;
      if (valid != nullptr && !valid[r]) {
        if (h_prev != h) std::copy(h_prev + r * H, h_prev + r * H + n, hr);
        std::fill(yr, yr + n, T(0));
        continue;
      }
      const T* row = straight ? hr : a + r * n;  // tanh(a) or tanh(a/2), or a for ReLU
      if (activation == Activation::kRelu) {
        for (int64_t u = 0; u < n; ++u) hr[u] = row[u] > T(0) ? row[u] : T(0);
      } else if (activation == Activation::kSigmoid) {
        for (int64_t u = 0; u < n; ++u) hr[u] = row[u] * T(0.5) + T(0.5);
      } else if (!straight) {
        std::copy(row, row + n, hr);
      }
      if (yr != hr) std::copy(hr, hr + n, yr);
    }
  }

  void Finish(const State&, int64_t, int64_t, int64_t, int64_t) const {}
};

// What a GRU step (the reset gate after the matmul, PyTorch's) does after its
// matmuls, from a = [x_r + h_r, x_z + h_z, x_n, h_n] (slots of n; h_· = h_{t-1}
// W_h·) and the bias [b_r, b_z, b_n, b_hn]: r = σ(a_r), z = σ(a_z), n = tanh(x_n +
// b_n + r (h_n + b_hn)), h = n + z (h_prev - n), σ(a) = tanh(a/2)/2 + 1/2. A row
// past its length keeps its h and outputs zeros. For a differentiated pass (q_r
// not null) the backward pass's factors (fused.py's _gru_grad_factors), each (T,
// B, H): with k_n = (1 - z) tanh'(n), q_r = k_n (h_n + b_hn) σ'(r), q_z = (h_prev -
// n) σ'(z), q_hn = k_n r, and z itself.
template <typename T>
struct GruCell {
  static constexpr int64_t kGates = 3, kSlots = 4;
  static constexpr int64_t kHiddenSlots[] = {0, 1, 3};
  int64_t B, H;
  T *q_r, *q_z, *q_hn, *k_n, *z_out;

  struct State {
    std::vector<T> rz, n;  // (rows, 2n) and (rows, n): the arguments of the step's two tanh
  };

  State Start(int64_t, int64_t rows, int64_t, int64_t n) const {
    return {std::vector<T>(rows * 2 * n), std::vector<T>(rows * n)};
  }

  void Step(State& state, int64_t t, int64_t r0, int64_t rows, int64_t u0, int64_t n, T* a,
            const T* bias, const bool* valid, const T* h_prev, T* h, T* y) const {
    const T* __restrict b = bias;
    for (int64_t r = 0; r < rows; ++r) {  // σ's arguments a/2
      const T* __restrict row = a + r * 4 * n;
      T* __restrict rz = state.rz.data() + r * 2 * n;
      for (int64_t u = 0; u < 2 * n; ++u) rz[u] = (row[u] + b[u]) * T(0.5);
    }
    Tanh<T>(rows * 2 * n, state.rz.data(), state.rz.data());
    for (int64_t r = 0; r < rows; ++r) {
      T* __restrict row = a + r * 4 * n;
      const T* __restrict rg = state.rz.data() + r * 2 * n;
      T* __restrict arg = state.n.data() + r * n;
      for (int64_t u = 0; u < n; ++u) {
        const T h_n = row[3 * n + u] + b[3 * n + u];
        row[3 * n + u] = h_n;
        arg[u] = row[2 * n + u] + b[2 * n + u] + (rg[u] * T(0.5) + T(0.5)) * h_n;
      }
    }
    Tanh<T>(rows * n, state.n.data(), state.n.data());
    for (int64_t r = 0; r < rows; ++r) {
      const T* __restrict rz = state.rz.data() + r * 2 * n;
      const T* __restrict nr = state.n.data() + r * n;
      const T* hp = h_prev + r * H;  // may be h itself (the cut by rows): no __restrict
      if (q_r != nullptr) {
        const T* __restrict h_n = a + r * 4 * n + 3 * n;
        const int64_t at = (t * B + r0 + r) * H + u0;
        T* __restrict qr = q_r + at;
        T* __restrict qz = q_z + at;
        T* __restrict qhn = q_hn + at;
        T* __restrict kn = k_n + at;
        T* __restrict zr = z_out + at;
        for (int64_t u = 0; u < n; ++u) {
          const T rg = rz[u] * T(0.5) + T(0.5), zg = rz[n + u] * T(0.5) + T(0.5);
          const T k = (T(1) - zg) * (T(1) - nr[u] * nr[u]);
          qr[u] = k * h_n[u] * (rg * (T(1) - rg));
          qz[u] = (hp[u] - nr[u]) * (zg * (T(1) - zg));
          qhn[u] = k * rg;
          kn[u] = k;
          zr[u] = zg;
        }
      }
      T* hr = h + r * H;
      T* yr = y + r * H;
      if (valid != nullptr && !valid[r]) {
        if (h_prev != h) std::copy(hp, hp + n, hr);
        std::fill(yr, yr + n, T(0));
        continue;
      }
      for (int64_t u = 0; u < n; ++u) {
        const T zg = rz[n + u] * T(0.5) + T(0.5);
        hr[u] = nr[u] + zg * (hp[u] - nr[u]);
      }
      if (yr != hr) std::copy(hr, hr + n, yr);
    }
  }

  void Finish(const State&, int64_t, int64_t, int64_t, int64_t) const {}
};

// Waits, spinning, until `counter` reaches `target`: for a step's other bands, which
// other cores are finishing (microseconds); yields now and then for a thread the
// system has paused.
void SpinUntil(const std::atomic<int64_t>& counter, int64_t target) {
  for (int64_t spins = 1; counter.load(std::memory_order_acquire) < target; ++spins) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
    if (spins % 1024 == 0) std::this_thread::yield();
  }
}

// Runs run(s, j) for the steps s = first, ..., last of `count` bands j on this
// thread and XLA's intra-op threads, a step's bands only once every band of the
// step before is done (a loop cut by columns: each step reads what all bands wrote
// the step before). Each thread first tries the band of its own slot, so that a
// band's data stays in one core's cache, then any band of the step no thread has
// taken, and only then waits for the step's last bands, meanwhile calling
// fill(s), if given, until it returns false: work for later steps that absorbs
// the cores' differences in speed (another process on a core slows it for
// milliseconds at a time). A band is taken only by a running thread, which runs
// it at once, so a thread the pool starts late, or never, cannot hold the others
// up. This thread returns once no other is inside the loop (TakeTogether), so run
// and fill may refer to this frame.
void RunBandsInSteps(ffi::ThreadPool& pool, int64_t count, int64_t first, int64_t last,
                     std::function<void(int64_t, int64_t)> run,
                     std::function<bool(int64_t)> fill = nullptr) {
  struct State : SharedWork {
    int64_t count, first, last;
    std::function<void(int64_t, int64_t)> run;
    std::function<bool(int64_t)> fill;
    std::unique_ptr<std::atomic<int64_t>[]> next;  // per band: the first step not taken
    std::atomic<int64_t> slots{0}, done{0};
    void Take() override {
      const int64_t own = slots.fetch_add(1) % count;
      for (int64_t s = first; s <= last; ++s) {
        for (int64_t k = 0; k < count; ++k) {
          const int64_t j = (own + k) % count;
          int64_t expected = s;
          if (next[j].compare_exchange_strong(expected, s + 1)) {
            run(s, j);
            done.fetch_add(1, std::memory_order_acq_rel);
          }
        }
        const int64_t target = (s - first + 1) * count;  // every band of step s
        if (fill) {
          while (done.load(std::memory_order_acquire) < target && fill(s)) {
          }
        }
        SpinUntil(done, target);
      }
    }
  };
  auto state = std::make_shared<State>();
  state->count = count;
  state->first = first;
  state->last = last;
  state->run = std::move(run);
  state->fill = std::move(fill);
  state->next = std::make_unique<std::atomic<int64_t>[]>(count);
  for (int64_t j = 0; j < count; ++j) state->next[j].store(first);
  TakeTogether(pool, count, state);
}

// Runs run(s, j) for the steps s = first, ..., last of `count` bands j, each band's
// steps in order but no band waiting for another's (the rows of a batch, which are
// independent sequences), on this thread and XLA's intra-op threads. A running
// thread takes the next step of its own band, unless that band is more than a step
// ahead of another band no thread is running, whose step it takes instead: a thread
// alone runs the bands in turn, and a thread the pool starts late (traced up to 3.7
// ms after a call began, on a 2-core VM) takes over a band halfway through, rather
// than the call waiting for it to run its band from the start. This thread returns
// once no other thread is inside (TakeTogether), so run may refer to this frame.
void RunBandsFreely(ffi::ThreadPool& pool, int64_t count, int64_t first, int64_t last,
                    std::function<void(int64_t, int64_t)> run) {
  struct State : SharedWork {
    int64_t count, first, end;  // end: a finished band's progress
    std::function<void(int64_t, int64_t)> run;
    // Per band: twice the steps done, plus 1 while a thread runs its next step.
    std::unique_ptr<std::atomic<int64_t>[]> progress;
    std::atomic<int64_t> slots{0};
    void Take() override {
      const int64_t own = slots.fetch_add(1) % count;
      for (int64_t spins = 1;; ++spins) {
        int64_t pick = -1, least = end, own_progress = end;
        bool unfinished = false;
        for (int64_t k = 0; k < count; ++k) {
          const int64_t j = (own + k) % count;
          const int64_t p = progress[j].load(std::memory_order_acquire);
          unfinished |= p != end;
          if (p % 2 == 0 && p < least) least = p, pick = j;
          if (j == own && p % 2 == 0) own_progress = p;
        }
        if (!unfinished) return;
        if (own_progress < end && own_progress <= least + 2) pick = own;
        if (pick < 0) {  // every band left is running: wait for one to come free
#if defined(__x86_64__)
          __builtin_ia32_pause();
#endif
          if (spins % 1024 == 0) std::this_thread::yield();
          continue;
        }
        int64_t p = pick == own ? own_progress : least;
        if (!progress[pick].compare_exchange_strong(p, p + 1, std::memory_order_acquire)) continue;
        run(first + p / 2, pick);
        progress[pick].store(p + 2, std::memory_order_release);
      }
    }
  };
  auto state = std::make_shared<State>();
  state->count = count;
  state->first = first;
  state->end = 2 * (last - first + 1);
  state->run = std::move(run);
  state->progress = std::make_unique<std::atomic<int64_t>[]>(count);
  for (int64_t j = 0; j < count; ++j) state->progress[j].store(0);
  TakeTogether(pool, count, state);
}

// A cell's forward pass (see Forward) cut by rows: the rows of the batch are
// independent sequences, so the steps of a band of rows need no other band's: per
// step two matmuls into the gates, (rows, I) x (I, G) and (rows, H) x (H, G), both
// weights packed once per call. The bands' steps run through RunBandsFreely, so a
// thread the pool starts late, or a core the system takes away for a while, delays
// the call by half that time, not all of it. For small steps only (the cut by
// columns shares a step's matmul between the cores). Where every row is valid a
// step's state h is its output: the cell writes it straight into the step's rows
// of ys, and the next step's product reads it there (no copies of h).
template <typename T, typename Cell>
void ForwardByRows(ffi::ThreadPool& pool, const Cell& cell, int64_t steps, int64_t B, int64_t I,
                   int64_t H, const T* xs, const T* w_ih, const T* w_hh, const T* bias,
                   const T* h0, const bool* valid, bool reverse, T* ys, T* h_last) {
  constexpr int64_t gates = Cell::kGates, slots = Cell::kSlots;
  struct RowBand {
    int64_t r0, n;
    std::vector<T> a, h;  // (n, slots H) and (n, H)
    const T* h_prev;      // the band's h after the last step run: h, or its rows of ys
    typename Cell::State state;
    std::unique_ptr<GateBand<T>> w_x, w_h;  // no w_x when I is 0 (a BLAS rejects k = 0)
  };
  const int64_t count = RowBandCount(pool, B);
  std::vector<RowBand> bands(count);
  RunBandsFreely(pool, count, -1, steps - 1, [&](int64_t s, int64_t j) {
    RowBand& band = bands[j];
    if (s < 0) {  // the band's rows, its buffers and its share of the weights, packed
      std::tie(band.r0, band.n) = RowBandRows(B, count, j);
      const int64_t r0 = band.r0, n = band.n;
      band.a.resize(n * slots * H);
      band.h.assign(h0 + r0 * H, h0 + (r0 + n) * H);
      band.h_prev = band.h.data();
      band.state = cell.Start(r0, n, 0, H);
      if (I > 0) {
        band.w_x =
            std::make_unique<GateBand<T>>(n, I, H, 0, H, gates, w_ih, InOrder(gates), slots, 0);
      }
      band.w_h = std::make_unique<GateBand<T>>(n, H, H, 0, H, gates, w_hh, HiddenSlots<Cell>(),
                                               slots, I > 0 ? gates : 0);
      return;
    }
    const int64_t r0 = band.r0, n = band.n, t = reverse ? steps - 1 - s : s;
    T* y = ys + (t * B + r0) * H;
    T* h_new = valid == nullptr ? y : band.h.data();
    if (band.w_x) band.w_x->Multiply(xs + (t * B + r0) * I, band.a.data());
    band.w_h->Multiply(band.h_prev, band.a.data());
    cell.Step(band.state, t, r0, n, 0, H, band.a.data(), bias,
              valid == nullptr ? nullptr : valid + t * B + r0, band.h_prev, h_new, y);
    band.h_prev = h_new;
  });
  for (const RowBand& band : bands) {
    std::copy(band.h_prev, band.h_prev + band.n * H, h_last + band.r0 * H);
    cell.Finish(band.state, band.r0, band.n, 0, H);
  }
}

// How many bands of hidden units a loop cut by columns uses: one per thread at
// most, none narrower than a vector, none with less than kMinBlockWork of a step's
// (B, H) x (H, G) multiply-adds (the band's share is worth a synchronisation).
int64_t ColumnBands(ffi::ThreadPool& pool, int64_t B, int64_t H, int64_t G) {
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  return std::max<int64_t>(1, std::min({threads, H / kAlign, B * H * G / kMinBlockWork}));
}

// Projected inputs of a band of a column-cut loop: the bytes of a chunk of steps.
constexpr int64_t kChunkBytes = int64_t{2} << 20;

// The same forward pass cut by columns instead of rows, for weights too large for
// one core's cache, where every thread reading all of w_hh every step (the cut by
// rows) is bound by the cache's bandwidth. Band j of the hidden units [u0, u1)
// owns the matching columns of every gate: w_hh's and w_ih's (packed once per
// call, gate by gate, straight from the weights) and its cells' states. Its inputs
// are projected a chunk of steps at a time, one (chunk·B, I) x (I, gates (u1 -
// u0)) product into kChunkBytes of a two-chunk scratch, never the whole (T, B, G)
// (XLA allocates buffers of 32 MiB and more afresh on every call, and the system
// zeroes every page); a step's rows of it become its gates in place. A step of
// band j needs every band's h of the step before: the steps run through
// RunBandsInSteps, step -1 taking each band's share of the weights, and a thread
// that waits for the other bands of a step projects the next chunk of any band
// meanwhile (the band's own step does it where none has).
template <typename T, typename Cell>
void ForwardByColumns(ffi::ThreadPool& pool, const Cell& cell, int64_t steps, int64_t B,
                      int64_t I, int64_t H, const T* xs, const T* w_ih, const T* w_hh,
                      const T* bias, const T* h0, const bool* valid, bool reverse, T* ys,
                      T* h_last) {
  constexpr int64_t gates = Cell::kGates, slots = Cell::kSlots;
  const int64_t G = gates * H, count = ColumnBands(pool, B, H, G);
  struct ColumnBand {
    int64_t u0, u1;
    std::unique_ptr<GateBand<T>> w_h, w_x;  // the latter for whole chunks
    std::vector<T> bias;
    typename Cell::State state;
    Scratch<T> projected;  // (2, chunk, B, slots n): a step's rows become its gates in place
  };
  std::vector<ColumnBand> bands(count);
  for (int64_t j = 0; j < count; ++j) std::tie(bands[j].u0, bands[j].u1) = Band(H, count, j);
  std::vector<T> states(2 * B * H);  // (2, B, H): h before and after a step
  std::copy(h0, h0 + B * H, states.begin());
  // h after loop step s - 1 (h0 for s = 0): where every row is valid, the (B, H) of
  // ys the step wrote (a step's state is its output; no copies of h), else states'.
  auto h_after = [&](int64_t s) -> T* {
    if (valid == nullptr && s > 0) return ys + (reverse ? steps - s : s - 1) * B * H;
    return states.data() + (s % 2) * B * H;
  };
  const int64_t widest = slots * (bands.back().u1 - bands.back().u0);  // the last band's
  const int64_t chunk =
      I > 0 ? std::clamp<int64_t>(kChunkBytes / static_cast<int64_t>(B * widest * sizeof(T)), 1,
                                  steps)
            : 1;
  const int64_t chunks = (steps + chunk - 1) / chunk;
  // Per chunk and band: 0 not taken, 1 being projected, 2 projected.
  auto chunk_state = std::make_unique<std::atomic<int>[]>(chunks * count);
  for (int64_t q = 0; q < chunks * count; ++q) chunk_state[q].store(0, std::memory_order_relaxed);
  // The first time step of chunk q of the loop's steps (the last in reverse).
  auto first_time = [&](int64_t q) {
    return reverse ? steps - q * chunk - std::min(chunk, steps - q * chunk) : q * chunk;
  };
  // The inputs of chunk q, projected onto band j's columns.
  auto project = [&](int64_t q, int64_t j) {
    ColumnBand& band = bands[j];
    const int64_t u0 = band.u0, n = band.u1 - u0, Sb = slots * n;
    const int64_t length = std::min(chunk, steps - q * chunk);
    const T* x = xs + first_time(q) * B * I;
    T* out = band.projected.data() + (q % 2) * chunk * B * Sb;
    if (length == chunk && band.w_x) {
      band.w_x->Multiply(x, out);
    } else {
      for (int64_t g = 0; g < gates; ++g) {
        CallGemm<T>(kNoTrans, kNoTrans, length * B, n, I, x, I, w_ih + g * H + u0, G, out + g * n,
                    Sb);
      }
    }
    chunk_state[q * count + j].store(2, std::memory_order_release);
  };
  auto claim = [&](int64_t q, int64_t j) {
    int expected = 0;
    return chunk_state[q * count + j].compare_exchange_strong(expected, 1);
  };
  // While waiting for step s's last bands: the next chunk's inputs of any band.
  auto fill = [&](int64_t s) {
    const int64_t q = s / chunk + 1;
    if (s < 0 || I == 0 || q >= chunks) return false;
    for (int64_t j = 0; j < count; ++j) {
      if (claim(q, j)) {
        project(q, j);
        return true;
      }
    }
    return false;
  };

  RunBandsInSteps(
      pool, count, -1, steps - 1,
      [&](int64_t s, int64_t j) {
        ColumnBand& band = bands[j];
        const int64_t u0 = band.u0, n = band.u1 - u0, Sb = slots * n;
        if (s < 0) {  // this band's columns of the weights and the bias, and its cells
          band.w_h = std::make_unique<GateBand<T>>(B, H, H, u0, n, gates, w_hh,
                                                   HiddenSlots<Cell>(), slots, I > 0 ? gates : 0);
          if (I > 0 && chunk < steps) {
            band.w_x = std::make_unique<GateBand<T>>(chunk * B, I, H, u0, n, gates, w_ih,
                                                     InOrder(gates), slots, 0);
          }
          band.projected = Scratch<T>(2 * chunk * B * Sb);
          if (I == 0) {  // the slots only the projection writes (the GRU's x_n) stay zero
            std::fill(band.projected.data(), band.projected.data() + 2 * chunk * B * Sb, T(0));
          }
          for (int64_t g = 0; g < slots; ++g) {
            band.bias.insert(band.bias.end(), bias + g * H + u0, bias + g * H + u0 + n);
          }
          band.state = cell.Start(0, B, u0, n);
          return;
        }
        const int64_t t = reverse ? steps - 1 - s : s, q = s / chunk;
        T* a = band.projected.data();
        if (I > 0) {  // this step's rows of its chunk's inputs, projected here or by another thread
          if (claim(q, j)) {
            project(q, j);
          } else {
            while (chunk_state[q * count + j].load(std::memory_order_acquire) != 2) {
#if defined(__x86_64__)
              __builtin_ia32_pause();
#endif
            }
          }
          a += ((q % 2) * chunk + t - first_time(q)) * B * Sb;
        }
        const T* h_prev = h_after(s);
        T* h_next = h_after(s + 1);
        band.w_h->Multiply(h_prev, a);
        cell.Step(band.state, t, 0, B, u0, n, a, band.bias.data(),
                  valid == nullptr ? nullptr : valid + t * B, h_prev + u0, h_next + u0,
                  ys + t * B * H + u0);
      },
      fill);
  std::copy(h_after(steps), h_after(steps) + B * H, h_last);
  for (const ColumnBand& band : bands) cell.Finish(band.state, 0, B, band.u0, band.u1 - band.u0);
}

// The smallest w_hh a forward pass is cut by columns for: by rows, where every
// thread reads all of it every step, measured faster at 256 KiB (an Elman cell of
// 256 units), by columns at 1 MiB (an LSTM of 256).
constexpr int64_t kColumnCutBytes = int64_t{512} << 10;

// A cell's forward pass over a whole sequence (the fused path's pass when nothing,
// or only what the cell writes itself, is kept for a backward pass): a_t = x_t W_ih +
// h_{t-1} W_hh, then the cell's step (its bias, activations and states). Past its
// length (valid[t, r] false) a sequence keeps its carry and outputs zeros. Cut by
// columns where w_hh is kColumnCutBytes or more, there are two bands and a step's
// matmul is worth a thread, else by rows.
template <typename T, typename Cell>
void Forward(ffi::ThreadPool& pool, const Cell& cell, int64_t steps, int64_t B, int64_t I,
             int64_t H, const T* xs, const T* w_ih, const T* w_hh, const T* bias, const T* h0,
             const bool* valid, bool reverse, T* ys, T* h_last) {
  const int64_t G = Cell::kGates * H;
  const bool large = H * G * static_cast<int64_t>(sizeof(T)) >= kColumnCutBytes;
  if (large && ColumnBands(pool, B, H, G) > 1) {
    ForwardByColumns<T, Cell>(pool, cell, steps, B, I, H, xs, w_ih, w_hh, bias, h0, valid,
                              reverse, ys, h_last);
  } else {
    ForwardByRows<T, Cell>(pool, cell, steps, B, I, H, xs, w_ih, w_hh, bias, h0, valid, reverse,
                           ys, h_last);
  }
}

// What every backward loop cut by columns has: over the steps in the opposite order
// to the forward pass's, band j of `count` owns hidden units [u0, u1) and their
// columns of dh (B, u1 - u0), the gradient w.r.t. the state, which starts as
// dh_last's and ends in dh_first. init(band) packs the band's slice of w_hhᵀ and
// sets up what else it keeps; loop step s first calls product(band, t) for time t
// of step s - 1, adding to dh that step's gate gradients (all columns: the steps
// synchronise) times the slice, then step(band, t) for step s's own time, on the
// band's columns; step `steps` only finishes the last product. Returns the bands.
// State: a struct with int64_t u0, u1 and std::vector<T> dh.
template <typename T, typename State, typename Init, typename Product, typename Step>
std::vector<State> BackwardByColumns(ffi::ThreadPool& pool, int64_t count, int64_t steps,
                                    int64_t B, int64_t H, bool reverse, const T* dh_last,
                                    T* dh_first, Init init, Product product, Step step) {
  std::vector<State> bands(count);
  for (int64_t j = 0; j < count; ++j) std::tie(bands[j].u0, bands[j].u1) = Band(H, count, j);
  auto time = [&](int64_t s) { return reverse ? s : steps - 1 - s; };
  RunBandsInSteps(pool, count, -1, steps, [&](int64_t s, int64_t j) {
    State& band = bands[j];
    if (s < 0) {
      const int64_t n = band.u1 - band.u0;
      band.dh.resize(B * n);
      CopyRows<T>(B, n, dh_last + band.u0, H, band.dh.data(), n);
      init(band);
      return;
    }
    if (s > 0) product(band, time(s - 1));
    if (s < steps) step(band, time(s));
  });
  for (const State& band : bands) {
    const int64_t n = band.u1 - band.u0;
    CopyRows<T>(B, n, band.dh.data(), n, dh_first + band.u0, H);
  }
  return bands;
}

// The LSTM's backward loop, what fused.py's reverse scan computes, over the steps in
// the opposite order to the forward pass's: with dh and dc the gradients w.r.t. a
// step's new state (dh = d_y + the step after's), dc += dh k_c, the gradient w.r.t.
// the gate pre-activations dG = [dc dc dc dh] ⊙ k (written over k), and w.r.t. the
// state before the step dh_prev = dG W_hhᵀ, dc_prev = dc f; past a sequence's
// length dG = 0 and the gradients pass through unchanged. Cut by columns like the
// forward pass: band j owns hidden units [u0, u1), their columns of dh and dc, of
// all four gates of dG, and w_hh's rows [u0, u1), transposed and packed once. Step
// s of a band takes dh_prev's columns from the whole of the step before's dG (so
// the steps synchronise), then its own columns of step s's dG.
template <typename T>
void LstmBackward(ffi::ThreadPool& pool, int64_t steps, int64_t B, int64_t H, const T* w_hh,
                  const T* k_c, const T* f, const T* d_ys, const bool* valid, bool reverse,
                  const T* dh_last, const T* dc_last, T* d_gates, T* dh_first, T* dc_first) {
  const int64_t G = 4 * H;
  struct State {
    int64_t u0, u1;
    std::vector<T> dh;
    std::unique_ptr<PackedMatrix<T>> w;  // w_hhᵀ's columns [u0, u1): (4H, u1 - u0)
    std::vector<T> dc, passed;           // (B, u1 - u0) each; passed: dh past lengths
  };
  auto init = [&](State& band) {
    const int64_t u0 = band.u0, n = band.u1 - u0;
    band.w = std::make_unique<PackedMatrix<T>>(B, n, G, w_hh + u0 * G, G, /*transposed=*/true);
    band.dc.resize(B * n);
    band.passed.resize(B * n);
    CopyRows<T>(B, n, dc_last + u0, H, band.dc.data(), n);
  };
  auto product = [&](State& band, int64_t t) {  // dh_prev, from all of dG
    const int64_t n = band.u1 - band.u0;
    band.w->Multiply(d_gates + t * B * G, band.dh.data(), T(0));
    for (int64_t r = 0; r < B; ++r) {
      if (valid != nullptr && !valid[t * B + r]) {
        std::copy(band.passed.data() + r * n, band.passed.data() + (r + 1) * n,
                  band.dh.data() + r * n);
      }
    }
  };
  auto step = [&](State& band, int64_t t) {
    const int64_t u0 = band.u0, n = band.u1 - u0;
    for (int64_t r = 0; r < B; ++r) {
      const int64_t at = t * B + r;
      const T* __restrict d_y = d_ys + at * H + u0;
      const T* __restrict kc = k_c + at * H + u0;
      const T* __restrict fr = f + at * H + u0;
      const T* __restrict dh_next = band.dh.data() + r * n;
      T* __restrict passed = band.passed.data() + r * n;
      T* __restrict dc = band.dc.data() + r * n;
      T* __restrict dg = d_gates + at * G + u0;
      if (valid != nullptr && !valid[at]) {  // dG = 0; dh and dc pass through
        for (int64_t u = 0; u < n; ++u) passed[u] = d_y[u] + dh_next[u];
        for (int64_t g = 0; g < 4; ++g) std::fill(dg + g * H, dg + g * H + n, T(0));
        continue;
      }
      for (int64_t u = 0; u < n; ++u) {
        const T dh_u = d_y[u] + dh_next[u];
        const T dc_u = dc[u] + dh_u * kc[u];
        dg[u] *= dc_u;
        dg[H + u] *= dc_u;
        dg[2 * H + u] *= dc_u;
        dg[3 * H + u] *= dh_u;
        dc[u] = dc_u * fr[u];
      }
    }
  };
  const auto bands = BackwardByColumns<T, State>(pool, ColumnBands(pool, B, H, G), steps, B, H,
                                                 reverse, dh_last, dh_first, init, product, step);
  for (const State& band : bands) {
    const int64_t n = band.u1 - band.u0;
    CopyRows<T>(B, n, band.dc.data(), n, dc_first + band.u0, H);
  }
}

// The GRU's backward loop (the reset gate after the matmul), what fused.py's
// reverse scan computes, from the forward pass's factors (GruCell): with dh the
// gradient w.r.t. a step's new state (d_y + the step after's), the gradients
// w.r.t. the gates' inputs d_r = dh q_r, d_z = dh q_z, d_n = dh k_n and w.r.t.
// h_{t-1} W_hn + b_hn d_hn = dh q_hn, each written over its factor, and w.r.t. the
// state before the step dh_prev = dh z + [d_r d_z d_hn] W_hhᵀ; past a sequence's
// length the four are 0 and dh passes through. Cut by columns like LstmBackward:
// band j owns hidden units [u0, u1) and w_hh's rows [u0, u1) of each gate,
// transposed and packed once.
template <typename T>
void GruBackward(ffi::ThreadPool& pool, int64_t steps, int64_t B, int64_t H, const T* w_hh,
                 const T* z, const T* d_ys, const bool* valid, bool reverse, const T* dh_last,
                 T* d_r, T* d_z, T* d_hn, T* d_n, T* dh_first) {
  T* const d_rec[3] = {d_r, d_z, d_hn};  // the products' left-hand sides, w_hh's gate order
  struct State {
    int64_t u0, u1;
    std::vector<T> dh;               // dh z (dh past lengths), then dh_prev
    std::vector<PackedMatrix<T>> w;  // per gate, w_hh's block's rows [u0, u1) transposed
  };
  auto init = [&](State& band) {
    const int64_t u0 = band.u0, n = band.u1 - u0;
    for (int64_t g = 0; g < 3; ++g) {
      band.w.emplace_back(B, n, H, w_hh + u0 * 3 * H + g * H, 3 * H, /*transposed=*/true);
    }
  };
  auto product = [&](State& band, int64_t t) {  // dh_prev: dh z plus the products
    for (int64_t g = 0; g < 3; ++g) band.w[g].Multiply(d_rec[g] + t * B * H, band.dh.data(), T(1));
  };
  auto step = [&](State& band, int64_t t) {
    const int64_t u0 = band.u0, n = band.u1 - u0;
    for (int64_t r = 0; r < B; ++r) {
      const int64_t at = (t * B + r) * H + u0;
      const T* __restrict d_y = d_ys + at;
      const T* __restrict zr = z + at;
      T* __restrict dh = band.dh.data() + r * n;
      T* __restrict dr = d_r + at;
      T* __restrict dz = d_z + at;
      T* __restrict dhn = d_hn + at;
      T* __restrict dn = d_n + at;
      if (valid != nullptr && !valid[t * B + r]) {  // no gradients; dh passes through
        for (int64_t u = 0; u < n; ++u) dh[u] += d_y[u];
        for (T* d : {dr, dz, dhn, dn}) std::fill(d, d + n, T(0));
        continue;
      }
      for (int64_t u = 0; u < n; ++u) {
        const T dh_u = d_y[u] + dh[u];
        dr[u] *= dh_u;
        dz[u] *= dh_u;
        dhn[u] *= dh_u;
        dn[u] *= dh_u;
        dh[u] = dh_u * zr[u];
      }
    }
  };
  BackwardByColumns<T, State>(pool, ColumnBands(pool, B, H, 3 * H), steps, B, H, reverse, dh_last,
                              dh_first, init, product, step);
}

// The Elman cell's backward loop (an activation whose slope follows from its
// output), what fused.py's reverse scan computes: with dh = d_y + the step after's
// gradient w.r.t. h_t, the gradient w.r.t. the pre-activation d_pre = dh act'(y)
// (tanh: 1 - y², the sigmoid: y (1 - y), relu: 1 where y > 0), written to d_pre,
// and w.r.t. h_{t-1} d_pre W_hhᵀ; past a sequence's length d_pre = 0 and dh
// passes through. Cut like the forward pass: by columns (band j owns hidden units
// [u0, u1) and w_hh's rows [u0, u1), transposed and packed once; the bands
// synchronise at every step) where w_hh is kColumnCutBytes or more, else by rows
// of the batch, each thread running every step for its own rows.
template <typename T>
void ElmanBackward(ffi::ThreadPool& pool, int64_t steps, int64_t B, int64_t H, const T* w_hh,
                   const T* ys, const T* d_ys, const bool* valid, bool reverse,
                   Activation activation, const T* dh_last, T* d_pre, T* dh_first) {
  auto time = [&](int64_t s) { return reverse ? s : steps - 1 - s; };
  // Step t for rows [r0, r0 + rows) and units [u0, u0 + n): d_pre from dh (rows,
  // n), the gradient w.r.t. h_t less d_y, which becomes what passes to h_{t-1}
  // before the product adds d_pre W_hhᵀ: 0, or dh itself past a length. Where every
  // row is valid the product overwrites dh instead (beta 0), and nothing is zeroed.
  const T beta = valid == nullptr ? T(0) : T(1);
  auto step = [&](int64_t t, int64_t r0, int64_t rows, int64_t u0, int64_t n, T* dh) {
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t at = (t * B + r0 + r) * H + u0;
      const T* __restrict d_y = d_ys + at;
      const T* __restrict y = ys + at;
      T* __restrict out = d_pre + at;
      T* __restrict g = dh + r * n;
      if (valid != nullptr && !valid[t * B + r0 + r]) {
        for (int64_t u = 0; u < n; ++u) g[u] += d_y[u];
        std::fill(out, out + n, T(0));
        continue;
      }
      if (activation == Activation::kTanh) {
        for (int64_t u = 0; u < n; ++u) out[u] = (d_y[u] + g[u]) * (T(1) - y[u] * y[u]);
      } else if (activation == Activation::kSigmoid) {
        for (int64_t u = 0; u < n; ++u) out[u] = (d_y[u] + g[u]) * (y[u] * (T(1) - y[u]));
      } else {
        for (int64_t u = 0; u < n; ++u) out[u] = y[u] > T(0) ? d_y[u] + g[u] : T(0);
      }
      if (valid != nullptr) std::fill(g, g + n, T(0));
    }
  };
  const bool large = H * H * static_cast<int64_t>(sizeof(T)) >= kColumnCutBytes;
  const int64_t count = ColumnBands(pool, B, H, H);
  if (!large || count == 1) {  // by rows, through RunBandsFreely as ForwardByRows
    struct RowBand {
      int64_t r0, rows;
      std::vector<T> dh;
      std::unique_ptr<PackedMatrix<T>> w;  // w_hhᵀ
    };
    const int64_t bands = RowBandCount(pool, B);
    std::vector<RowBand> by_rows(bands);
    RunBandsFreely(pool, bands, -1, steps - 1, [&](int64_t s, int64_t j) {
      RowBand& band = by_rows[j];
      if (s < 0) {
        std::tie(band.r0, band.rows) = RowBandRows(B, bands, j);
        const int64_t r0 = band.r0, rows = band.rows;
        band.w = std::make_unique<PackedMatrix<T>>(rows, H, H, w_hh, H, /*transposed=*/true);
        band.dh.assign(dh_last + r0 * H, dh_last + (r0 + rows) * H);
        return;
      }
      const int64_t t = time(s);
      step(t, band.r0, band.rows, 0, H, band.dh.data());
      band.w->Multiply(d_pre + (t * B + band.r0) * H, band.dh.data(), beta);
    });
    for (const RowBand& band : by_rows) {
      std::copy(band.dh.begin(), band.dh.end(), dh_first + band.r0 * H);
    }
    return;
  }
  struct State {
    int64_t u0, u1;
    std::vector<T> dh;
    std::unique_ptr<PackedMatrix<T>> w;  // w_hhᵀ's columns [u0, u1): (H, u1 - u0)
  };
  auto init = [&](State& band) {
    band.w = std::make_unique<PackedMatrix<T>>(B, band.u1 - band.u0, H, w_hh + band.u0 * H, H,
                                               /*transposed=*/true);
  };
  auto product = [&](State& band, int64_t t) {
    band.w->Multiply(d_pre + t * B * H, band.dh.data(), beta);
  };
  auto by_band = [&](State& band, int64_t t) {
    step(t, 0, B, band.u0, band.u1 - band.u0, band.dh.data());
  };
  BackwardByColumns<T, State>(pool, count, steps, B, H, reverse, dh_last, dh_first, init, product,
                              by_band);
}

ffi::Error LstmGrad(ffi::ThreadPool pool, ffi::AnyBuffer w_hh, ffi::AnyBuffer k,
                    ffi::AnyBuffer k_c, ffi::AnyBuffer f, ffi::AnyBuffer d_ys,
                    ffi::AnyBuffer valid, ffi::AnyBuffer dh_last, ffi::AnyBuffer dc_last,
                    ffi::Result<ffi::AnyBuffer> d_gates, ffi::Result<ffi::AnyBuffer> dh_first,
                    ffi::Result<ffi::AnyBuffer> dc_first, bool reverse, bool has_valid) {
  auto kd = k.dimensions(), wd = w_hh.dimensions();
  if (kd.size() != 3 || wd.size() != 2 || kd[2] != 4 * wd[0] || wd[1] != 4 * wd[0]) {
    return ffi::Error::InvalidArgument("jaxrnn_blas_lstm_grad: k (T, B, 4H), w_hh (H, 4H)");
  }
  const int64_t steps = kd[0], B = kd[1], H = wd[0];
  const int64_t per_step = steps * B * H;
  if (!Holds(k_c, per_step) || !Holds(f, per_step) || !Holds(d_ys, per_step) ||
      !Holds(dh_last, B * H) || !Holds(dc_last, B * H) || !Holds(*d_gates, 4 * per_step) ||
      !ValidFits(valid, has_valid, steps, B)) {
    return ffi::Error::InvalidArgument("jaxrnn_blas_lstm_grad: shapes do not match");
  }
  if (!SameType(k.element_type(), w_hh, k_c, f, d_ys, dh_last, dc_last, *d_gates, *dh_first,
                *dc_first)) {
    return ffi::Error::InvalidArgument("jaxrnn_blas_lstm_grad: operands of one float type");
  }
  if (B == 0 || H == 0) return ffi::Error::Success();
  const bool* mask = has_valid ? valid.typed_data<bool>() : nullptr;
  return ForFloatType(k.element_type(), "jaxrnn_blas_lstm_grad", [&](auto zero) {
    using T = decltype(zero);
    if (d_gates->untyped_data() != k.untyped_data()) {  // without the alias: a copy
      std::copy(k.typed_data<T>(), k.typed_data<T>() + 4 * per_step, d_gates->typed_data<T>());
    }
    LstmBackward<T>(pool, steps, B, H, w_hh.typed_data<T>(), k_c.typed_data<T>(),
                    f.typed_data<T>(), d_ys.typed_data<T>(), mask, reverse,
                    dh_last.typed_data<T>(), dc_last.typed_data<T>(), d_gates->typed_data<T>(),
                    dh_first->typed_data<T>(), dc_first->typed_data<T>());
  });
}

// The operands every forward kernel takes: xs (T, B, I), w_ih (I, gates H), w_hh
// (H, gates H), the bias (slots H), h0 (B, H), valid (T, B) bools if has_valid.
struct ForwardOperands {
  ffi::AnyBuffer xs, w_ih, w_hh, bias, h0, valid;
  bool has_valid;
  int64_t steps = 0, B = 0, I = 0, H = 0;

  // Reads T, B, I and H; false if the shapes do not match each other (the bias has
  // `slots` H: the GRU's b_hn as well).
  bool Check(int64_t gates, int64_t slots) {
    auto xd = xs.dimensions(), hd = h0.dimensions(), id = w_ih.dimensions();
    auto wd = w_hh.dimensions();
    if (xd.size() != 3 || hd.size() != 2 || id.size() != 2 || wd.size() != 2) return false;
    steps = xd[0], B = xd[1], I = xd[2], H = hd[1];
    return hd[0] == B && id[0] == I && id[1] == gates * H && wd[0] == H && wd[1] == gates * H &&
           Holds(bias, slots * H) && ValidFits(valid, has_valid, steps, B) &&
           SameType(xs.element_type(), w_ih, w_hh, bias, h0);
  }

  // Forward<T> with the cell make_cell(T{}) returns, writing ys (T, B, H) and h_T (B, H).
  template <typename MakeCell>
  ffi::Error Run(ffi::ThreadPool& pool, const char* call, bool reverse, MakeCell make_cell,
                 ffi::Result<ffi::AnyBuffer>& ys, ffi::Result<ffi::AnyBuffer>& h_out) {
    if (!SameType(xs.element_type(), *ys, *h_out)) {
      return ffi::Error::InvalidArgument(std::string(call) + ": results of the inputs' type");
    }
    if (steps == 0) CopyBuffer(h0, h_out);  // no step: h_T = h_0
    if (steps == 0 || B == 0 || H == 0) return ffi::Error::Success();
    const bool* mask = has_valid ? valid.typed_data<bool>() : nullptr;
    return ForFloatType(xs.element_type(), call, [&](auto zero) {
      using T = decltype(zero);
      Forward<T>(pool, make_cell(zero), steps, B, I, H, xs.typed_data<T>(), w_ih.typed_data<T>(),
                 w_hh.typed_data<T>(), bias.typed_data<T>(), h0.typed_data<T>(), mask, reverse,
                 ys->typed_data<T>(), h_out->typed_data<T>());
    });
  }
};

ffi::Error Lstm(ffi::ThreadPool pool, ffi::AnyBuffer xs, ffi::AnyBuffer w_ih, ffi::AnyBuffer w_hh,
                ffi::AnyBuffer bias, ffi::AnyBuffer h0, ffi::AnyBuffer c0, ffi::AnyBuffer valid,
                ffi::Result<ffi::AnyBuffer> ys, ffi::Result<ffi::AnyBuffer> h_out,
                ffi::Result<ffi::AnyBuffer> c_out, ffi::Result<ffi::AnyBuffer> k,
                ffi::Result<ffi::AnyBuffer> k_c, ffi::Result<ffi::AnyBuffer> f, bool reverse,
                bool has_valid) {
  ForwardOperands in{xs, w_ih, w_hh, bias, h0, valid, has_valid};
  if (!in.Check(4, 4)) {
    return ffi::Error::InvalidArgument("jaxrnn_blas_lstm: shapes or float types do not match");
  }
  const int64_t steps = in.steps, B = in.B, H = in.H;
  const int64_t factors = k->element_count(), per_step = steps * B * H;
  auto cd = c0.dimensions();
  if (cd.size() != 2 || cd[0] != B || cd[1] != H ||
      (factors != 0 &&
       (factors != 4 * per_step || !Holds(*k_c, per_step) || !Holds(*f, per_step)))) {
    return ffi::Error::InvalidArgument("jaxrnn_blas_lstm: shapes do not match");
  }
  if (!SameType(xs.element_type(), c0, *c_out, *k, *k_c, *f)) {
    return ffi::Error::InvalidArgument("jaxrnn_blas_lstm: operands of one float type expected");
  }
  if (steps == 0) CopyBuffer(c0, c_out);  // no step: c_T = c_0
  auto make_cell = [&](auto zero) {
    using T = decltype(zero);
    auto data = [&](auto& buffer) { return factors ? buffer->template typed_data<T>() : nullptr; };
    return LstmCell<T>{B, H, c0.typed_data<T>(), c_out->typed_data<T>(), data(k), data(k_c),
                       data(f)};
  };
  return in.Run(pool, "jaxrnn_blas_lstm", reverse, make_cell, ys, h_out);
}

// jaxrnn_blas_elman: an Elman cell's forward pass over a whole sequence, h_t =
// act(x_t W_ih + h_{t-1} W_hh + b), act tanh, relu or the sigmoid.
ffi::Error Elman(ffi::ThreadPool pool, ffi::AnyBuffer xs, ffi::AnyBuffer w_ih,
                 ffi::AnyBuffer w_hh, ffi::AnyBuffer bias, ffi::AnyBuffer h0, ffi::AnyBuffer valid,
                 ffi::Result<ffi::AnyBuffer> ys, ffi::Result<ffi::AnyBuffer> h_out, bool reverse,
                 bool has_valid, int64_t activation) {
  ForwardOperands in{xs, w_ih, w_hh, bias, h0, valid, has_valid};
  if (!in.Check(1, 1)) {
    return ffi::Error::InvalidArgument("jaxrnn_blas_elman: shapes or float types do not match");
  }
  if (activation < 0 || activation > static_cast<int64_t>(Activation::kSigmoid)) {
    return ffi::Error::InvalidArgument("jaxrnn_blas_elman: activation 0 (tanh), 1 (relu) or 2");
  }
  auto make_cell = [&](auto zero) {
    return ElmanCell<decltype(zero)>{in.H, static_cast<Activation>(activation)};
  };
  return in.Run(pool, "jaxrnn_blas_elman", reverse, make_cell, ys, h_out);
}

ffi::Error ElmanGrad(ffi::ThreadPool pool, ffi::AnyBuffer w_hh, ffi::AnyBuffer ys,
                     ffi::AnyBuffer d_ys, ffi::AnyBuffer valid, ffi::AnyBuffer dh_last,
                     ffi::Result<ffi::AnyBuffer> d_pre, ffi::Result<ffi::AnyBuffer> dh_first,
                     bool reverse, bool has_valid, int64_t activation) {
  auto yd = ys.dimensions(), wd = w_hh.dimensions();
  if (yd.size() != 3 || wd.size() != 2 || yd[2] != wd[0] || wd[1] != wd[0]) {
    return ffi::Error::InvalidArgument("jaxrnn_blas_elman_grad: ys (T, B, H), w_hh (H, H)");
  }
  const int64_t steps = yd[0], B = yd[1], H = wd[0];
  if (!Holds(d_ys, steps * B * H) || !Holds(dh_last, B * H) ||
      !ValidFits(valid, has_valid, steps, B)) {
    return ffi::Error::InvalidArgument("jaxrnn_blas_elman_grad: shapes do not match");
  }
  if (activation < 0 || activation > static_cast<int64_t>(Activation::kSigmoid)) {
    return ffi::Error::InvalidArgument(
        "jaxrnn_blas_elman_grad: activation 0 (tanh), 1 (relu) or 2");
  }
  if (!SameType(ys.element_type(), w_hh, d_ys, dh_last, *d_pre, *dh_first)) {
    return ffi::Error::InvalidArgument("jaxrnn_blas_elman_grad: operands of one float type");
  }
  if (steps == 0) CopyBuffer(dh_last, dh_first);  // no step: the gradient passes through
  if (steps == 0 || B == 0 || H == 0) return ffi::Error::Success();
  const bool* mask = has_valid ? valid.typed_data<bool>() : nullptr;
  return ForFloatType(ys.element_type(), "jaxrnn_blas_elman_grad", [&](auto zero) {
    using T = decltype(zero);
    ElmanBackward<T>(pool, steps, B, H, w_hh.typed_data<T>(), ys.typed_data<T>(),
                     d_ys.typed_data<T>(), mask, reverse, static_cast<Activation>(activation),
                     dh_last.typed_data<T>(), d_pre->typed_data<T>(),
                     dh_first->typed_data<T>());
  });
}

// jaxrnn_blas_gru: a GRU's forward pass (the reset gate after the matmul) over a
// whole sequence, and for a training pass the backward pass's factors.
ffi::Error Gru(ffi::ThreadPool pool, ffi::AnyBuffer xs, ffi::AnyBuffer w_ih, ffi::AnyBuffer w_hh,
               ffi::AnyBuffer bias, ffi::AnyBuffer h0, ffi::AnyBuffer valid,
               ffi::Result<ffi::AnyBuffer> ys, ffi::Result<ffi::AnyBuffer> h_out,
               ffi::Result<ffi::AnyBuffer> q_r, ffi::Result<ffi::AnyBuffer> q_z,
               ffi::Result<ffi::AnyBuffer> q_hn, ffi::Result<ffi::AnyBuffer> k_n,
               ffi::Result<ffi::AnyBuffer> z, bool reverse, bool has_valid) {
  ForwardOperands in{xs, w_ih, w_hh, bias, h0, valid, has_valid};
  if (!in.Check(3, 4)) {
    return ffi::Error::InvalidArgument("jaxrnn_blas_gru: shapes or float types do not match");
  }
  const int64_t factors = q_r->element_count(), per_step = in.steps * in.B * in.H;
  for (auto* out : {&q_r, &q_z, &q_hn, &k_n, &z}) {
    const int64_t size = (*out)->element_count();
    if (size != factors || (factors != 0 && size != per_step)) {
      return ffi::Error::InvalidArgument("jaxrnn_blas_gru: shapes do not match");
    }
  }
  if (!SameType(xs.element_type(), *q_r, *q_z, *q_hn, *k_n, *z)) {
    return ffi::Error::InvalidArgument("jaxrnn_blas_gru: operands of one float type expected");
  }
  auto make_cell = [&](auto zero) {
    using T = decltype(zero);
    auto data = [&](auto& buffer) { return factors ? buffer->template typed_data<T>() : nullptr; };
    return GruCell<T>{in.B, in.H, data(q_r), data(q_z), data(q_hn), data(k_n), data(z)};
  };
  return in.Run(pool, "jaxrnn_blas_gru", reverse, make_cell, ys, h_out);
}

ffi::Error GruGrad(ffi::ThreadPool pool, ffi::AnyBuffer w_hh, ffi::AnyBuffer q_r,
                   ffi::AnyBuffer q_z, ffi::AnyBuffer q_hn, ffi::AnyBuffer k_n, ffi::AnyBuffer z,
                   ffi::AnyBuffer d_ys, ffi::AnyBuffer valid, ffi::AnyBuffer dh_last,
                   ffi::Result<ffi::AnyBuffer> d_r, ffi::Result<ffi::AnyBuffer> d_z,
                   ffi::Result<ffi::AnyBuffer> d_hn, ffi::Result<ffi::AnyBuffer> d_n,
                   ffi::Result<ffi::AnyBuffer> dh_first, bool reverse, bool has_valid) {
  auto zd = z.dimensions(), wd = w_hh.dimensions();
  if (zd.size() != 3 || wd.size() != 2 || zd[2] != wd[0] || wd[1] != 3 * wd[0]) {
    return ffi::Error::InvalidArgument("jaxrnn_blas_gru_grad: z (T, B, H), w_hh (H, 3H)");
  }
  const int64_t steps = zd[0], B = zd[1], H = wd[0], per_step = steps * B * H;
  bool match = Holds(dh_last, B * H) && ValidFits(valid, has_valid, steps, B);
  for (const ffi::AnyBuffer* in : {&q_r, &q_z, &q_hn, &k_n, &d_ys}) {
    match = match && Holds(*in, per_step);
  }
  if (!match) return ffi::Error::InvalidArgument("jaxrnn_blas_gru_grad: shapes do not match");
  if (!SameType(z.element_type(), w_hh, q_r, q_z, q_hn, k_n, d_ys, dh_last, *d_r, *d_z, *d_hn,
                *d_n, *dh_first)) {
    return ffi::Error::InvalidArgument("jaxrnn_blas_gru_grad: operands of one float type");
  }
  if (B == 0 || H == 0) return ffi::Error::Success();
  const bool* mask = has_valid ? valid.typed_data<bool>() : nullptr;
  return ForFloatType(z.element_type(), "jaxrnn_blas_gru_grad", [&](auto zero) {
    using T = decltype(zero);
    const ffi::AnyBuffer* factors[] = {&q_r, &q_z, &q_hn, &k_n};
    ffi::Result<ffi::AnyBuffer>* grads[] = {&d_r, &d_z, &d_hn, &d_n};
    for (int g = 0; g < 4; ++g) {  // without the aliases: copies
      const T* from = factors[g]->typed_data<T>();
      T* to = (*grads[g])->typed_data<T>();
      if (to != from) std::copy(from, from + per_step, to);
    }
    GruBackward<T>(pool, steps, B, H, w_hh.typed_data<T>(), z.typed_data<T>(),
                   d_ys.typed_data<T>(), mask, reverse, dh_last.typed_data<T>(),
                   d_r->typed_data<T>(), d_z->typed_data<T>(), d_hn->typed_data<T>(),
                   d_n->typed_data<T>(), dh_first->typed_data<T>());
  });
}

}  // namespace

// Switches every float32 product of the kernels to oneDNN's library at `path`
// (libdnnl.so.3, with its OpenMP runtime), or with a null path back to oneMKL; for
// the kernels that start afterwards. 0 when done, else -1, and
// jaxrnn_onednn_error() says why.
std::string g_onednn_error;

extern "C" int jaxrnn_use_onednn(const char* path) {
  if (path == nullptr) {
    g_onednn.store(nullptr);
    return 0;
  }
  void* library = dlopen(path, RTLD_NOW | RTLD_LOCAL);  // kept loaded for the process
  if (library == nullptr) {
    g_onednn_error = dlerror();
    return -1;
  }
  Onednn found{};
  found.sgemm = reinterpret_cast<decltype(found.sgemm)>(dlsym(library, "dnnl_sgemm"));
  found.set_threads =
      reinterpret_cast<decltype(found.set_threads)>(dlsym(library, "omp_set_num_threads"));
  found.get_threads =
      reinterpret_cast<decltype(found.get_threads)>(dlsym(library, "omp_get_max_threads"));
  if (!found.sgemm || !found.set_threads || !found.get_threads) {
    g_onednn_error = std::string(path) + " lacks dnnl_sgemm or OpenMP's thread count";
    return -1;
  }
  g_onednn.store(new Onednn(found));  // never freed: a kernel running now may read it
  return 0;
}

extern "C" const char* jaxrnn_onednn_error() { return g_onednn_error.c_str(); }

// Whether the CPU is Intel's (where oneMKL's own code paths run).
extern "C" int jaxrnn_intel_cpu() { return kIntelCpu ? 1 : 0; }

// c = a @ b for row-major float32 a (m, k) and b (k, n), through what the kernels
// use for float32 now: the self-test of jaxrnn/blas/__init__.py.
extern "C" void jaxrnn_float32_product(int64_t m, int64_t n, int64_t k, const float* a,
                                       const float* b, float* c) {
  CallGemm<float>(kNoTrans, kNoTrans, m, n, k, a, k, b, n, c, n);
}

// The float32 tanh the loop kernels use on CPUs not Intel's, for the tests (ctypes).
extern "C" void jaxrnn_own_tanh(int64_t n, const float* a, float* r) { OwnTanh(n, a, r); }

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
                                  .Arg<ffi::AnyBuffer>()  // xs (T, B, I)
                                  .Arg<ffi::AnyBuffer>()  // w_ih (I, 4H)
                                  .Arg<ffi::AnyBuffer>()  // w_hh (H, 4H)
                                  .Arg<ffi::AnyBuffer>()  // b (4H,)
                                  .Arg<ffi::AnyBuffer>()  // h0 (B, H)
                                  .Arg<ffi::AnyBuffer>()  // c0 (B, H)
                                  .Arg<ffi::AnyBuffer>()  // valid (T, B) bool, if has_valid
                                  .Ret<ffi::AnyBuffer>()  // ys (T, B, H)
                                  .Ret<ffi::AnyBuffer>()  // h_T (B, H)
                                  .Ret<ffi::AnyBuffer>()  // c_T (B, H)
                                  .Ret<ffi::AnyBuffer>()  // k (T, B, 4H), or empty
                                  .Ret<ffi::AnyBuffer>()  // k_c (T, B, H), or empty
                                  .Ret<ffi::AnyBuffer>()  // f (T, B, H), or empty
                                  .Attr<bool>("reverse")
                                  .Attr<bool>("has_valid"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxrnn_blas_elman, Elman,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()  // xs (T, B, I)
                                  .Arg<ffi::AnyBuffer>()  // w_ih (I, H)
                                  .Arg<ffi::AnyBuffer>()  // w_hh (H, H)
                                  .Arg<ffi::AnyBuffer>()  // b (H,)
                                  .Arg<ffi::AnyBuffer>()  // h0 (B, H)
                                  .Arg<ffi::AnyBuffer>()  // valid (T, B) bool, if has_valid
                                  .Ret<ffi::AnyBuffer>()  // ys (T, B, H)
                                  .Ret<ffi::AnyBuffer>()  // h_T (B, H)
                                  .Attr<bool>("reverse")
                                  .Attr<bool>("has_valid")
                                  .Attr<int64_t>("activation"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxrnn_blas_lstm_grad, LstmGrad,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()  // w_hh (H, 4H)
                                  .Arg<ffi::AnyBuffer>()  // k (T, B, 4H), aliased to d_gates
                                  .Arg<ffi::AnyBuffer>()  // k_c (T, B, H)
                                  .Arg<ffi::AnyBuffer>()  // f (T, B, H)
                                  .Arg<ffi::AnyBuffer>()  // d_ys (T, B, H), zero past lengths
                                  .Arg<ffi::AnyBuffer>()  // valid (T, B) bool, if has_valid
                                  .Arg<ffi::AnyBuffer>()  // dh_T (B, H)
                                  .Arg<ffi::AnyBuffer>()  // dc_T (B, H)
                                  .Ret<ffi::AnyBuffer>()  // d_gates (T, B, 4H)
                                  .Ret<ffi::AnyBuffer>()  // dh_0 (B, H)
                                  .Ret<ffi::AnyBuffer>()  // dc_0 (B, H)
                                  .Attr<bool>("reverse")
                                  .Attr<bool>("has_valid"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxrnn_blas_gru, Gru,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()  // xs (T, B, I)
                                  .Arg<ffi::AnyBuffer>()  // w_ih (I, 3H)
                                  .Arg<ffi::AnyBuffer>()  // w_hh (H, 3H)
                                  .Arg<ffi::AnyBuffer>()  // [b_r b_z b_n b_hn] (4H,)
                                  .Arg<ffi::AnyBuffer>()  // h0 (B, H)
                                  .Arg<ffi::AnyBuffer>()  // valid (T, B) bool, if has_valid
                                  .Ret<ffi::AnyBuffer>()  // ys (T, B, H)
                                  .Ret<ffi::AnyBuffer>()  // h_T (B, H)
                                  .Ret<ffi::AnyBuffer>()  // q_r (T, B, H), or empty
                                  .Ret<ffi::AnyBuffer>()  // q_z (T, B, H), or empty
                                  .Ret<ffi::AnyBuffer>()  // q_hn (T, B, H), or empty
                                  .Ret<ffi::AnyBuffer>()  // k_n (T, B, H), or empty
                                  .Ret<ffi::AnyBuffer>()  // z (T, B, H), or empty
                                  .Attr<bool>("reverse")
                                  .Attr<bool>("has_valid"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxrnn_blas_gru_grad, GruGrad,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()  // w_hh (H, 3H)
                                  .Arg<ffi::AnyBuffer>()  // q_r (T, B, H), aliased to d_r
                                  .Arg<ffi::AnyBuffer>()  // q_z, aliased to d_z
                                  .Arg<ffi::AnyBuffer>()  // q_hn, aliased to d_hn
                                  .Arg<ffi::AnyBuffer>()  // k_n, aliased to d_n
                                  .Arg<ffi::AnyBuffer>()  // z (T, B, H)
                                  .Arg<ffi::AnyBuffer>()  // d_ys (T, B, H), zero past lengths
                                  .Arg<ffi::AnyBuffer>()  // valid (T, B) bool, if has_valid
                                  .Arg<ffi::AnyBuffer>()  // dh_T (B, H)
                                  .Ret<ffi::AnyBuffer>()  // d_r (T, B, H)
                                  .Ret<ffi::AnyBuffer>()  // d_z
                                  .Ret<ffi::AnyBuffer>()  // d_hn
                                  .Ret<ffi::AnyBuffer>()  // d_n
                                  .Ret<ffi::AnyBuffer>()  // dh_0 (B, H)
                                  .Attr<bool>("reverse")
                                  .Attr<bool>("has_valid"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxrnn_blas_elman_grad, ElmanGrad,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()  // w_hh (H, H)
                                  .Arg<ffi::AnyBuffer>()  // ys (T, B, H)
                                  .Arg<ffi::AnyBuffer>()  // d_ys (T, B, H), zero past lengths
                                  .Arg<ffi::AnyBuffer>()  // valid (T, B) bool, if has_valid
                                  .Arg<ffi::AnyBuffer>()  // dh_T (B, H)
                                  .Ret<ffi::AnyBuffer>()  // d_pre (T, B, H)
                                  .Ret<ffi::AnyBuffer>()  // dh_0 (B, H)
                                  .Attr<bool>("reverse")
                                  .Attr<bool>("has_valid")
                                  .Attr<int64_t>("activation"));
