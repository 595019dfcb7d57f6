// oneDNN's 2-D convolution (forward, input gradient, kernel gradient) as XLA FFI handlers
// for the CPU: NHWC images, HWIO kernels, float32, no dilation, no groups.
// An experiment (benchmarks/experiments/ffi_conv/README.md): ffi_conv.py loads it.
//
// Each distinct (shapes, strides, padding) builds its primitives once, the first time it
// runs, and keeps them: oneDNN compiles its kernels at that point (milliseconds), and a
// training step runs the same few dozen shapes thousands of times. A primitive runs with
// its own scratchpad per call, so XLA may run two of them at once.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using dnnl::memory;
using Tag = memory::format_tag;

dnnl::engine& Engine() {
  static dnnl::engine* engine = new dnnl::engine(dnnl::engine::kind::cpu, 0);
  return *engine;
}

// One convolution's geometry: x [n, h, w, c], kernel [kh, kw, c, o], y [n, oh, ow, o].
struct Geometry {
  int64_t n, h, w, c, kh, kw, o, oh, ow;
  int64_t stride_h, stride_w, pad_top, pad_bottom, pad_left, pad_right;

  auto Key() const {
    return std::make_tuple(n, h, w, c, kh, kw, o, oh, ow, stride_h, stride_w, pad_top,
                           pad_bottom, pad_left, pad_right);
  }
  memory::desc Images() const { return {{n, c, h, w}, memory::data_type::f32, Tag::nhwc}; }
  memory::desc Outputs() const {
    return {{n, o, oh, ow}, memory::data_type::f32, Tag::nhwc};
  }
  memory::desc Kernel(Tag tag) const {
    return {{o, c, kh, kw}, memory::data_type::f32, tag};
  }
  memory::dims Strides() const { return {stride_h, stride_w}; }
  memory::dims PadsBefore() const { return {pad_top, pad_left}; }
  memory::dims PadsAfter() const { return {pad_bottom, pad_right}; }
};

dnnl::primitive_attr UserScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// The forward primitive descriptor that the gradients are built against; the kernel's
// layout is oneDNN's choice (a reorder to and from HWIO costs little: kernels are small).
dnnl::convolution_forward::primitive_desc ForwardDesc(const Geometry& g) {
  return dnnl::convolution_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
      g.Images(), g.Kernel(Tag::any), g.Outputs(), g.Strides(), {0, 0}, g.PadsBefore(),
      g.PadsAfter(), UserScratchpad());
}

struct Forward {
  explicit Forward(const Geometry& g) : desc(ForwardDesc(g)), primitive(desc) {}
  dnnl::convolution_forward::primitive_desc desc;
  dnnl::convolution_forward primitive;
};

struct BackwardData {
  explicit BackwardData(const Geometry& g)
      : desc(Engine(), dnnl::algorithm::convolution_direct, g.Images(), g.Kernel(Tag::any),
             g.Outputs(), g.Strides(), {0, 0}, g.PadsBefore(), g.PadsAfter(),
             ForwardDesc(g), UserScratchpad()),
        primitive(desc) {}
  dnnl::convolution_backward_data::primitive_desc desc;
  dnnl::convolution_backward_data primitive;
};

struct BackwardWeights {
  explicit BackwardWeights(const Geometry& g)
      : desc(Engine(), dnnl::algorithm::convolution_direct, g.Images(), g.Kernel(Tag::any),
             g.Outputs(), g.Strides(), {0, 0}, g.PadsBefore(), g.PadsAfter(),
             ForwardDesc(g), UserScratchpad()),
        primitive(desc) {}
  dnnl::convolution_backward_weights::primitive_desc desc;
  dnnl::convolution_backward_weights primitive;
};

// Built once per geometry and kept for the life of the process.
template <typename Primitive>
const Primitive& Cached(const Geometry& g) {
  static std::mutex mutex;
  static auto* cache = new std::map<decltype(g.Key()), std::unique_ptr<Primitive>>();
  std::lock_guard<std::mutex> lock(mutex);
  auto& slot = (*cache)[g.Key()];
  if (!slot) slot = std::make_unique<Primitive>(g);
  return *slot;
}

// A kernel in HWIO (the caller's layout) as the primitive wants it: the caller's buffer
// itself when the layouts agree, else a reordered copy in `storage`.
memory KernelFor(const memory::desc& wanted, const Geometry& g, float* hwio,
                 dnnl::stream& stream) {
  memory user(g.Kernel(Tag::hwio), Engine(), hwio);
  if (wanted == user.get_desc()) return user;
  memory converted(wanted, Engine());
  dnnl::reorder(user, converted).execute(stream, user, converted);
  return converted;
}

memory Scratchpad(const memory::desc& desc, std::vector<uint8_t>& storage) {
  storage.resize(desc.get_size());
  return memory(desc, Engine(), storage.data());
}

template <typename Buffer>
void Dims4(const Buffer& buffer, int64_t* out) {
  auto dims = buffer.dimensions();
  for (int i = 0; i < 4; ++i) out[i] = dims[i];
}

Geometry MakeGeometry(const int64_t* x, const int64_t* k, const int64_t* y, int64_t stride_h,
                      int64_t stride_w, int64_t pad_top, int64_t pad_bottom,
                      int64_t pad_left, int64_t pad_right) {
  return Geometry{x[0], x[1], x[2], x[3], k[0], k[1], k[3], y[1], y[2],
                  stride_h, stride_w, pad_top, pad_bottom, pad_left, pad_right};
}

template <typename Body>
ffi::Error Guarded(Body body) {
  try {
    body();
    return ffi::Error::Success();
  } catch (const dnnl::error& e) {
    return ffi::Error::Internal(std::string("oneDNN convolution: ") + e.what());
  } catch (const std::exception& e) {
    return ffi::Error::Internal(std::string("oneDNN convolution: ") + e.what());
  }
}

ffi::Error ForwardImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> kernel,
                       ffi::ResultBuffer<ffi::F32> y, int64_t stride_h, int64_t stride_w,
                       int64_t pad_top, int64_t pad_bottom, int64_t pad_left,
                       int64_t pad_right) {
  return Guarded([&] {
    int64_t xd[4], kd[4], yd[4];
    Dims4(x, xd), Dims4(kernel, kd), Dims4(*y, yd);
    Geometry g = MakeGeometry(xd, kd, yd, stride_h, stride_w, pad_top, pad_bottom,
                              pad_left, pad_right);
    const Forward& conv = Cached<Forward>(g);
    dnnl::stream stream(Engine());
    std::vector<uint8_t> scratch;
    memory src(g.Images(), Engine(), x.typed_data());
    memory dst(g.Outputs(), Engine(), y->typed_data());
    memory weights = KernelFor(conv.desc.weights_desc(), g, kernel.typed_data(), stream);
    conv.primitive.execute(stream, {{DNNL_ARG_SRC, src},
                                    {DNNL_ARG_WEIGHTS, weights},
                                    {DNNL_ARG_DST, dst},
                                    {DNNL_ARG_SCRATCHPAD,
                                     Scratchpad(conv.desc.scratchpad_desc(), scratch)}});
    stream.wait();
  });
}

ffi::Error BackwardDataImpl(ffi::Buffer<ffi::F32> grad, ffi::Buffer<ffi::F32> kernel,
                            ffi::ResultBuffer<ffi::F32> x_grad, int64_t stride_h,
                            int64_t stride_w, int64_t pad_top, int64_t pad_bottom,
                            int64_t pad_left, int64_t pad_right) {
  return Guarded([&] {
    int64_t xd[4], kd[4], yd[4];
    Dims4(*x_grad, xd), Dims4(kernel, kd), Dims4(grad, yd);
    Geometry g = MakeGeometry(xd, kd, yd, stride_h, stride_w, pad_top, pad_bottom,
                              pad_left, pad_right);
    const BackwardData& conv = Cached<BackwardData>(g);
    dnnl::stream stream(Engine());
    std::vector<uint8_t> scratch;
    memory diff_dst(g.Outputs(), Engine(), grad.typed_data());
    memory diff_src(g.Images(), Engine(), x_grad->typed_data());
    memory weights = KernelFor(conv.desc.weights_desc(), g, kernel.typed_data(), stream);
    conv.primitive.execute(stream, {{DNNL_ARG_DIFF_DST, diff_dst},
                                    {DNNL_ARG_WEIGHTS, weights},
                                    {DNNL_ARG_DIFF_SRC, diff_src},
                                    {DNNL_ARG_SCRATCHPAD,
                                     Scratchpad(conv.desc.scratchpad_desc(), scratch)}});
    stream.wait();
  });
}

ffi::Error BackwardWeightsImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> grad,
                               ffi::ResultBuffer<ffi::F32> kernel_grad, int64_t stride_h,
                               int64_t stride_w, int64_t pad_top, int64_t pad_bottom,
                               int64_t pad_left, int64_t pad_right) {
  return Guarded([&] {
    int64_t xd[4], kd[4], yd[4];
    Dims4(x, xd), Dims4(*kernel_grad, kd), Dims4(grad, yd);
    Geometry g = MakeGeometry(xd, kd, yd, stride_h, stride_w, pad_top, pad_bottom,
                              pad_left, pad_right);
    const BackwardWeights& conv = Cached<BackwardWeights>(g);
    dnnl::stream stream(Engine());
    std::vector<uint8_t> scratch;
    memory src(g.Images(), Engine(), x.typed_data());
    memory diff_dst(g.Outputs(), Engine(), grad.typed_data());
    memory user(g.Kernel(Tag::hwio), Engine(), kernel_grad->typed_data());
    const bool direct = conv.desc.diff_weights_desc() == user.get_desc();
    memory diff_weights = direct ? user : memory(conv.desc.diff_weights_desc(), Engine());
    conv.primitive.execute(stream, {{DNNL_ARG_SRC, src},
                                    {DNNL_ARG_DIFF_DST, diff_dst},
                                    {DNNL_ARG_DIFF_WEIGHTS, diff_weights},
                                    {DNNL_ARG_SCRATCHPAD,
                                     Scratchpad(conv.desc.scratchpad_desc(), scratch)}});
    if (!direct) dnnl::reorder(diff_weights, user).execute(stream, diff_weights, user);
    stream.wait();
  });
}

}  // namespace

#define SKINJAX_CONV_ATTRS                                                            \
  .Attr<int64_t>("stride_h")                                                          \
      .Attr<int64_t>("stride_w")                                                      \
      .Attr<int64_t>("pad_top")                                                       \
      .Attr<int64_t>("pad_bottom")                                                    \
      .Attr<int64_t>("pad_left")                                                      \
      .Attr<int64_t>("pad_right")

XLA_FFI_DEFINE_HANDLER_SYMBOL(SkinjaxConvForward, ForwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>() SKINJAX_CONV_ATTRS);

XLA_FFI_DEFINE_HANDLER_SYMBOL(SkinjaxConvBackwardData, BackwardDataImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>() SKINJAX_CONV_ATTRS);

XLA_FFI_DEFINE_HANDLER_SYMBOL(SkinjaxConvBackwardWeights, BackwardWeightsImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>() SKINJAX_CONV_ATTRS);

// ffi_conv.py checks this before it registers the handlers.
extern "C" int SkinjaxConvAbiVersion() { return 1; }
