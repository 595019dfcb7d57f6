// 2-D convolution (NHWC x HWIO, float32) as patch matrices times the kernel, with oneDNN's
// single-threaded sgemm on blocks of output pixels, spread over XLA's intra-op threads.
// forward:        y[p, o]   = sum_k patches[p, k] * K[k, o]
// input grad:     cols[p, k] = sum_o dy[p, o] * K[k, o];  dx = col2im(cols)
// kernel grad:    dK[k, o]  = sum_p patches[p, k] * dy[p, o]
// k = (kh * KW + kw) * C + c, the HWIO kernel read as a [KH*KW*C, O] matrix.
// An experiment (benchmarks/experiments/ffi_conv/README.md): ffi_conv.py loads it.
// GEMM_BLOCK=<floats> sets a block's patch matrix size (default 64Ki floats, 256 KiB).

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "oneapi/dnnl/dnnl.h"
#include "xla/ffi/api/ffi.h"

extern "C" void omp_set_num_threads(int);

namespace ffi = xla::ffi;

namespace {

struct Geometry {
  int64_t n, h, w, c, kh, kw, o, oh, ow, sh, sw, pt, pl;
  int64_t Pixels() const { return oh * ow; }
  int64_t Depth() const { return kh * kw * c; }
  bool Pointwise() const { return kh == 1 && kw == 1 && sh == 1 && sw == 1 && pt == 0 && pl == 0; }
  // Output pixels per block: a block's patches about 256 KiB, at least 16 pixels.
  int64_t Block() const {
    static const int64_t floats = getenv("GEMM_BLOCK") ? atoll(getenv("GEMM_BLOCK")) : 64 * 1024;
    return std::min<int64_t>(Pixels(), std::max<int64_t>(16, floats / Depth()));
  }
  int64_t Blocks() const { return (Pixels() + Block() - 1) / Block(); }
};

// The patches of output pixels [p0, p0 + count) of image `x` (one image, HWC).
void Patches(const Geometry& g, const float* x, int64_t p0, int64_t count, float* out) {
  const int64_t depth = g.Depth();
  for (int64_t i = 0; i < count; ++i) {
    const int64_t p = p0 + i, oy = p / g.ow, ox = p % g.ow;
    float* row = out + i * depth;
    for (int64_t ky = 0; ky < g.kh; ++ky) {
      const int64_t iy = oy * g.sh - g.pt + ky;
      for (int64_t kx = 0; kx < g.kw; ++kx) {
        const int64_t ix = ox * g.sw - g.pl + kx;
        float* dst = row + (ky * g.kw + kx) * g.c;
        if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) {
          std::memset(dst, 0, sizeof(float) * g.c);
        } else {
          std::memcpy(dst, x + (iy * g.w + ix) * g.c, sizeof(float) * g.c);
        }
      }
    }
  }
}

// Adds the columns of output pixels [p0, p0 + count) back onto image `dx` (col2im).
void AddColumns(const Geometry& g, const float* cols, int64_t p0, int64_t count, float* dx) {
  const int64_t depth = g.Depth();
  for (int64_t i = 0; i < count; ++i) {
    const int64_t p = p0 + i, oy = p / g.ow, ox = p % g.ow;
    const float* row = cols + i * depth;
    for (int64_t ky = 0; ky < g.kh; ++ky) {
      const int64_t iy = oy * g.sh - g.pt + ky;
      if (iy < 0 || iy >= g.h) continue;
      for (int64_t kx = 0; kx < g.kw; ++kx) {
        const int64_t ix = ox * g.sw - g.pl + kx;
        if (ix < 0 || ix >= g.w) continue;
        const float* src = row + (ky * g.kw + kx) * g.c;
        float* dst = dx + (iy * g.w + ix) * g.c;
        for (int64_t c = 0; c < g.c; ++c) dst[c] += src[c];
      }
    }
  }
}

// Runs body(worker, item) for item in [0, items) on up to `workers` threads: this one and
// tasks on XLA's pool. A worker takes items until none is left; the caller waits only for
// items already taken, so a task that starts late (the pool busy) finds nothing and ends.
class Parallel {
 public:
  template <typename Body>
  static void For(ffi::ThreadPool& pool, int64_t items, int64_t workers, Body body) {
    auto state = std::make_shared<State>();
    state->items = items;
    auto work = [state, body]() {
      omp_set_num_threads(1);  // oneDNN's sgemm runs on this thread alone
      {
        std::lock_guard<std::mutex> lock(state->mutex);
        ++state->active;
      }
      const int64_t worker = state->next_worker.fetch_add(1);
      for (int64_t item = state->next.fetch_add(1); item < state->items;
           item = state->next.fetch_add(1)) {
        body(worker, item);
      }
      std::lock_guard<std::mutex> lock(state->mutex);
      if (--state->active == 0) state->done.notify_all();
    };
    for (int64_t i = 1; i < workers; ++i) {
      auto task = work;
      pool.Schedule(std::move(task));
    }
    work();
    std::unique_lock<std::mutex> lock(state->mutex);
    state->done.wait(lock, [&] { return state->active == 0; });
  }

 private:
  struct State {
    int64_t items = 0;
    std::atomic<int64_t> next{0}, next_worker{0};
    int64_t active = 0;
    std::mutex mutex;
    std::condition_variable done;
  };
};

struct Status {
  std::mutex mutex;
  std::string error;
  void Check(dnnl_status_t status) {
    if (status == dnnl_success) return;
    std::lock_guard<std::mutex> lock(mutex);
    if (error.empty()) error = "oneDNN sgemm failed with status " + std::to_string(status);
  }
  ffi::Error Result() const {
    return error.empty() ? ffi::Error::Success() : ffi::Error::Internal(error);
  }
};

int64_t Workers(ffi::ThreadPool& pool, int64_t items) {
  return std::max<int64_t>(1, std::min<int64_t>(items, std::max<int64_t>(1, pool.num_threads())));
}

template <typename Buffer>
void Dims4(const Buffer& buffer, int64_t* out) {
  auto dims = buffer.dimensions();
  for (int i = 0; i < 4; ++i) out[i] = dims[i];
}

Geometry Make(const int64_t* x, const int64_t* k, const int64_t* y, int64_t sh, int64_t sw,
              int64_t pt, int64_t pl) {
  return Geometry{x[0], x[1], x[2], x[3], k[0], k[1], k[3], y[1], y[2], sh, sw, pt, pl};
}

ffi::Error ForwardImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x,
                       ffi::Buffer<ffi::F32> kernel, ffi::ResultBuffer<ffi::F32> y,
                       int64_t stride_h, int64_t stride_w, int64_t pad_top, int64_t pad_bottom,
                       int64_t pad_left, int64_t pad_right) {
  int64_t xd[4], kd[4], yd[4];
  Dims4(x, xd), Dims4(kernel, kd), Dims4(*y, yd);
  const Geometry g = Make(xd, kd, yd, stride_h, stride_w, pad_top, pad_left);
  const float* xs = x.typed_data();
  const float* ks = kernel.typed_data();
  float* ys = y->typed_data();
  const int64_t blocks = g.Blocks(), block = g.Block(), depth = g.Depth();
  const int64_t items = g.n * blocks;
  const int64_t workers = Workers(pool, items);
  std::vector<std::vector<float>> scratch(workers);
  Status status;
  Parallel::For(pool, items, workers, [&](int64_t worker, int64_t item) {
    const int64_t n = item / blocks, p0 = (item % blocks) * block;
    const int64_t count = std::min(block, g.Pixels() - p0);
    const float* image = xs + n * g.h * g.w * g.c;
    const float* a = image + p0 * g.c;  // pointwise: the image is its own patch matrix
    if (!g.Pointwise()) {
      auto& patches = scratch[worker];
      patches.resize(block * depth);
      Patches(g, image, p0, count, patches.data());
      a = patches.data();
    }
    status.Check(dnnl_sgemm('N', 'N', count, g.o, depth, 1.f, a, depth, ks, g.o, 0.f,
                            ys + (n * g.Pixels() + p0) * g.o, g.o));
  });
  return status.Result();
}

ffi::Error BackwardDataImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> grad,
                            ffi::Buffer<ffi::F32> kernel, ffi::ResultBuffer<ffi::F32> x_grad,
                            int64_t stride_h, int64_t stride_w, int64_t pad_top,
                            int64_t pad_bottom, int64_t pad_left, int64_t pad_right) {
  int64_t xd[4], kd[4], yd[4];
  Dims4(*x_grad, xd), Dims4(kernel, kd), Dims4(grad, yd);
  const Geometry g = Make(xd, kd, yd, stride_h, stride_w, pad_top, pad_left);
  const float* dys = grad.typed_data();
  const float* ks = kernel.typed_data();
  float* dxs = x_grad->typed_data();
  const int64_t blocks = g.Blocks(), block = g.Block(), depth = g.Depth();
  Status status;
  if (g.Pointwise()) {  // dx = dy K^T, any rows apart
    const int64_t items = g.n * blocks;
    Parallel::For(pool, items, Workers(pool, items), [&](int64_t, int64_t item) {
      const int64_t n = item / blocks, p0 = (item % blocks) * block;
      const int64_t count = std::min(block, g.Pixels() - p0);
      const int64_t offset = n * g.Pixels() + p0;
      status.Check(dnnl_sgemm('N', 'T', count, depth, g.o, 1.f, dys + offset * g.o, g.o, ks,
                              g.o, 0.f, dxs + offset * g.c, depth));
    });
    return status.Result();
  }
  // Overlapping windows add into the same input pixels: one image per worker at a time.
  const int64_t workers = Workers(pool, g.n);
  std::vector<std::vector<float>> scratch(workers);
  Parallel::For(pool, g.n, workers, [&](int64_t worker, int64_t n) {
    float* image = dxs + n * g.h * g.w * g.c;
    std::memset(image, 0, sizeof(float) * g.h * g.w * g.c);
    auto& cols = scratch[worker];
    cols.resize(block * depth);
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t p0 = b * block, count = std::min(block, g.Pixels() - p0);
      status.Check(dnnl_sgemm('N', 'T', count, depth, g.o, 1.f,
                              dys + (n * g.Pixels() + p0) * g.o, g.o, ks, g.o, 0.f,
                              cols.data(), depth));
      AddColumns(g, cols.data(), p0, count, image);
    }
  });
  return status.Result();
}

ffi::Error BackwardWeightsImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x,
                               ffi::Buffer<ffi::F32> grad,
                               ffi::ResultBuffer<ffi::F32> kernel_grad, int64_t stride_h,
                               int64_t stride_w, int64_t pad_top, int64_t pad_bottom,
                               int64_t pad_left, int64_t pad_right) {
  int64_t xd[4], kd[4], yd[4];
  Dims4(x, xd), Dims4(*kernel_grad, kd), Dims4(grad, yd);
  const Geometry g = Make(xd, kd, yd, stride_h, stride_w, pad_top, pad_left);
  const float* xs = x.typed_data();
  const float* dys = grad.typed_data();
  float* dks = kernel_grad->typed_data();
  const int64_t blocks = g.Blocks(), block = g.Block(), depth = g.Depth();
  const int64_t items = g.n * blocks;
  const int64_t workers = Workers(pool, items);
  // Each worker sums into a kernel of its own; worker 0's is the output.
  std::vector<std::vector<float>> sums(workers), scratch(workers);
  std::memset(dks, 0, sizeof(float) * depth * g.o);
  for (int64_t i = 1; i < workers; ++i) sums[i].assign(depth * g.o, 0.f);
  Status status;
  Parallel::For(pool, items, workers, [&](int64_t worker, int64_t item) {
    const int64_t n = item / blocks, p0 = (item % blocks) * block;
    const int64_t count = std::min(block, g.Pixels() - p0);
    const float* image = xs + n * g.h * g.w * g.c;
    const float* a = image + p0 * g.c;
    if (!g.Pointwise()) {
      auto& patches = scratch[worker];
      patches.resize(block * depth);
      Patches(g, image, p0, count, patches.data());
      a = patches.data();
    }
    float* sum = worker == 0 ? dks : sums[worker].data();
    status.Check(dnnl_sgemm('T', 'N', depth, g.o, count, 1.f, a, depth,
                            dys + (n * g.Pixels() + p0) * g.o, g.o, 1.f, sum, g.o));
  });
  for (int64_t i = 1; i < workers; ++i) {
    const float* part = sums[i].data();
    for (int64_t j = 0; j < depth * g.o; ++j) dks[j] += part[j];
  }
  return status.Result();
}

}  // namespace

#define SKINJAX_CONV_ATTRS                                                            \
  .Attr<int64_t>("stride_h")                                                          \
      .Attr<int64_t>("stride_w")                                                      \
      .Attr<int64_t>("pad_top")                                                       \
      .Attr<int64_t>("pad_bottom")                                                    \
      .Attr<int64_t>("pad_left")                                                      \
      .Attr<int64_t>("pad_right")

#define SKINJAX_CONV_HANDLER(symbol, impl)                                            \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(symbol, impl,                                         \
                                ffi::Ffi::Bind()                                      \
                                    .Ctx<ffi::ThreadPool>()                           \
                                    .Arg<ffi::Buffer<ffi::F32>>()                     \
                                    .Arg<ffi::Buffer<ffi::F32>>()                     \
                                    .Ret<ffi::Buffer<ffi::F32>>() SKINJAX_CONV_ATTRS);

SKINJAX_CONV_HANDLER(SkinjaxConvForward, ForwardImpl)
SKINJAX_CONV_HANDLER(SkinjaxConvBackwardData, BackwardDataImpl)
SKINJAX_CONV_HANDLER(SkinjaxConvBackwardWeights, BackwardWeightsImpl)

extern "C" int SkinjaxConvAbiVersion() { return 1; }
