// The ONNX importer, part 2: translation of non-constant nodes into op specs (with their folded
// constant operands turned into attributes). make_op checks every attribute; what is checked here
// is only what the translation itself relies on (list lengths and ranges used in arithmetic).
#include <algorithm>
#include <cmath>

#include "src/core/size_limits.h"
#include "src/io/internal/onnx_importer.h"

namespace curv::onnx_detail {

Shape Importer::reshape_target(const Folded& f, int data, bool allowzero) {
  // Batch-dependent entries become 0 (copy the input's batch dim) or -1 (infer).
  const Shape in1 = shape_at(data, 1), in2 = shape_at(data, 2);
  const bool input_batch_major = !in1.empty() && in1[0] == 1 && in2[0] == 2;
  Shape target;
  int inferred = 0;
  for (std::size_t j = 0; j < f.i.size(); ++j) {
    if (f.n[j] == 0 && j == 0 && m_fixed_batch > 0 && f.i[0] == m_fixed_batch && input_batch_major && !allowzero) {
      target.push_back(0);
    } else if (f.n[j] == 0) {
      target.push_back(f.i[j]);
      inferred += f.i[j] == -1;
    } else if (j == 0 && f.n[j] == 1 && f.i[j] == 0 && input_batch_major && !allowzero) {
      target.push_back(0);
    } else {
      target.push_back(-1);
      ++inferred;
    }
  }
  if (inferred > 1)
    node_fail("Reshape target " + shape_str(f.i) + " has more than one batch-dependent or inferred dim");
  return target;
}

void Importer::import_conv_like(const std::string& t) {
  // A zero Pad in front merges into the op's pads (for AveragePool: padded zeros are counted).
  const PendingPad* pad = nullptr;
  if (const auto p = m_pending_pads.find(in_name(0)); p != m_pending_pads.end()) pad = &p->second;
  if (pad && t == "MaxPool") node_fail("zero padding (node '" + pad->node + "') before MaxPool is not supported");
  const int x = pad ? value_of(pad->source) : value(0);
  Shape xs = shape_at(x, 1);
  if (xs.size() != 4) node_fail("only 2-D (NCHW) inputs are supported, got " + shape_str(xs));
  if (pad) {
    xs[2] += pad->pads[0] + pad->pads[2];  // pads checked in [0, 2^32] at the Pad
    xs[3] += pad->pads[1] + pad->pads[3];
  }
  std::vector<std::int64_t> kernel = attr_ints("kernel_shape");
  OpSpec s(t);
  std::vector<int> ins{x};
  if (t == "Conv") {
    const int w = value(1);
    ins.push_back(w);
    if (present(2)) ins.push_back(value(2));
    const Shape ws = shape_at(w, 1);
    if (kernel.empty() && ws.size() == 4) kernel = {ws[2], ws[3]};
    s.set_int("group", attr_i("group", 1));
  }
  std::vector<std::int64_t> strides = attr_ints("strides"), dil = attr_ints("dilations"), pads = attr_ints("pads");
  if (strides.empty()) strides = {1, 1};
  if (dil.empty()) dil = {1, 1};
  if (pads.empty()) pads = {0, 0, 0, 0};
  if (kernel.size() != 2 || strides.size() != 2 || dil.size() != 2 || pads.size() != 4)
    node_fail("kernel_shape " + shape_str(kernel) + ", strides " + shape_str(strides) + ", dilations " +
              shape_str(dil) + " and pads " + shape_str(pads) +
              " must have 2, 2, 2 and 4 values (only 2-D convolution and pooling are supported)");
  s.set_ints("kernel", kernel).set_ints("strides", strides).set_ints("dilations", dil);
  const std::string auto_pad = attr_s("auto_pad", "NOTSET");
  if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    // Check kernel, strides and dilations before they enter the arithmetic (the op checks them all).
    emit_check(OpSpec(s).set_ints("pads", {0, 0, 0, 0}));
    for (int d = 0; d < 2; ++d) {
      const std::int64_t in = xs[2 + d], out = (in + strides[d] - 1) / strides[d];
      const std::int64_t total = std::max<std::int64_t>(0, (out - 1) * strides[d] + (kernel[d] - 1) * dil[d] + 1 - in);
      const std::int64_t small = total / 2, big = total - small;
      pads[d] = auto_pad == "SAME_UPPER" ? small : big;
      pads[2 + d] = auto_pad == "SAME_UPPER" ? big : small;
    }
  } else if (auto_pad == "VALID") {
    pads = {0, 0, 0, 0};
  } else if (auto_pad != "NOTSET") {
    node_fail("unsupported auto_pad '" + auto_pad + "'");
  }
  if (attr_i("storage_order", 0) != 0) node_fail("unsupported storage_order=1");
  bool count_include_pad = attr_i("count_include_pad", 0) != 0;
  if (pad) {
    const bool own = std::any_of(pads.begin(), pads.end(), [](std::int64_t v) { return v != 0; });
    if (t == "AveragePool" && own && !count_include_pad)
      node_fail("explicit Pad before an AveragePool that excludes its own padding is not supported");
    for (int d = 0; d < 4; ++d) pads[d] = checked_add(pads[d], pad->pads[d], "pads " + shape_str(pads));
    count_include_pad = true;
  }
  s.set_ints("pads", pads);
  if (t != "Conv") s.set_bool("ceil_mode", attr_i("ceil_mode", 0) != 0).set_bool("count_include_pad", count_include_pad);
  emit(s, ins);
}

void Importer::import_resize(const std::string& t) {
  // Resize (opset 10: X, scales; 11+: X, roi, scales, sizes) and Upsample (scales attribute before
  // opset 9, input after). Opset 10 and Upsample map coordinates as asymmetric/floor.
  const bool old = t == "Upsample" || m_opset < 11;
  const int x = value(0);
  const Shape xs = shape_at(x, 1);
  if (xs.size() != 4) node_fail("only 2-D (NCHW) inputs are supported, got " + shape_str(xs));
  if (attr_i("exclude_outside", 0) != 0) node_fail("exclude_outside=1 is not supported");
  if (attr_i("antialias", 0) != 0) node_fail("antialias=1 is not supported");
  if (attr_s("keep_aspect_ratio_policy", "stretch") != "stretch")
    node_fail("keep_aspect_ratio_policy '" + attr_s("keep_aspect_ratio_policy", "") + "' is not supported");
  if (attr("axes")) node_fail("the axes attribute is not supported (give scales or sizes for all 4 dims)");
  OpSpec s("Resize");
  s.set("mode", attr_s("mode", "nearest"))
      .set("coordinate_transformation_mode", old ? std::string("asymmetric")
                                                 : attr_s("coordinate_transformation_mode", "half_pixel"))
      .set("nearest_mode", old ? std::string("floor") : attr_s("nearest_mode", "round_prefer_floor"));
  std::vector<double> scales;
  std::vector<std::int64_t> sizes;
  if (t == "Upsample" && m_opset < 9) {
    if (const auto* a = typed_attr("scales", onnx::AttributeProto_AttributeType_FLOATS))
      scales.assign(a->floats().begin(), a->floats().end());
  } else {
    const int k = old ? 1 : 2;
    if (present(k)) scales = need_folded(k, "scales").doubles("scales");
    if (!old && present(3)) {
      const Folded& f = need_folded(3, "sizes");
      if (f.size() != 4) node_fail("sizes must have 4 values, got " + std::to_string(f.size()));
      if (f.n[1] != 0 || f.n[2] != 0 || f.n[3] != 0 || f.i[1] != xs[1])
        node_fail("sizes may change only H and W, and must give them as constants");
      sizes = {f.i[2], f.i[3]};
    }
  }
  if (!scales.empty()) {
    if (scales.size() != 4 || scales[0] != 1.0 || scales[1] != 1.0)
      node_fail("scales must be 4 values [1, 1, sh, sw] (only H and W are resized)");
    scales = {scales[2], scales[3]};
  }
  if (scales.empty() == sizes.empty()) node_fail("exactly one of scales and sizes must be given");
  s.set("scales", scales).set_ints("sizes", sizes);
  emit(s, {x});
}

bool Importer::is_zero(int k) const {
  if (m_zeros.count(in_name(k))) return true;
  const Folded* f = folded(k);
  if (!f || f->trainable || m_values.count(in_name(k))) return false;
  for (double v : f->doubles("initial state"))
    if (v != 0.0) return false;
  return true;
}

void Importer::import_rnn(const std::string& t) {
  // LSTM and GRU as torch.onnx.export writes nn.LSTM and nn.GRU: layout 0, default activations,
  // zero initial state, no sequence lengths or peepholes, GRU with linear_before_reset=1. Y_h
  // becomes slices of Y; LSTM's Y_c is not produced.
  const bool lstm = t == "LSTM";
  if (attr_i("layout", 0) != 0) node_fail("layout=1 is not supported");
  if (!lstm && attr_i("linear_before_reset", 0) != 1)
    node_fail("linear_before_reset=0 is not supported (PyTorch's nn.GRU exports 1)");
  if (attr("clip")) node_fail("clip is not supported");
  if (attr_i("input_forget", 0) != 0) node_fail("input_forget=1 is not supported");
  if (attr("activation_alpha") || attr("activation_beta")) node_fail("activation_alpha/beta are not supported");
  const std::string dir = attr_s("direction", "forward");
  const int D = dir == "bidirectional" ? 2 : 1;
  if (const auto* a = attr("activations")) {
    for (int k = 0; k < a->strings_size(); ++k)
      if (a->strings(k) != (k % (lstm ? 3 : 2) == 0 ? "Sigmoid" : "Tanh"))
        node_fail(std::string("activations other than Sigmoid, Tanh") + (lstm ? ", Tanh" : "") + " are not supported");
  }
  const std::int64_t hidden = attr_i("hidden_size", 0);
  std::vector<int> ins{value(0), value(1), value(2)};
  if (present(3)) ins.push_back(value(3));
  if (present(4)) node_fail("sequence_lens is not supported (all sequences have the full length)");
  if (present(5) && !is_zero(5)) node_fail("initial_h must be zero");
  if (lstm && present(6) && !is_zero(6)) node_fail("initial_c must be zero");
  if (lstm && present(7)) node_fail("peepholes (input P) are not supported");
  const int y = emit_named(OpSpec(t).set_int("hidden_size", hidden).set("direction", dir), ins, m_node_name);
  m_values[m_node->output(0)] = y;
  if (m_node->output_size() > 1 && !m_node->output(1).empty()) {
    // Y_h [D, B, H]: Y [T, D, B, H] at the last step of each direction.
    const std::int64_t T = shape_at(ins[0], 1).at(0);
    std::vector<int> parts;
    for (int d = 0; d < D; ++d) {
      const bool rev = dir == "reverse" || d == 1;
      const std::int64_t step = rev ? 0 : T - 1;
      OpSpec s("Slice");
      s.set_ints("starts", {step, d}).set_ints("ends", {step + 1, d + 1}).set_ints("axes", {0, 1}).set_ints("steps", {1, 1});
      parts.push_back(emit_named(s, {y}, m_node_name + "/Y_h" + std::to_string(d)));
    }
    const int h = D == 1 ? parts[0] : emit_named(OpSpec("Concat").set_int("axis", 1), parts, m_node_name + "/Y_h");
    m_values[m_node->output(1)] = emit_named(OpSpec("Squeeze").set_ints("axes", {0}), {h}, m_node_name + "/Y_h");
  }
}

void Importer::import_op(const std::string& t) {
  if (t == "Pow") {
    const auto e = need_folded(1, "exponent").doubles("exponent");
    if (e.empty()) node_fail("empty exponent");
    for (double v : e)
      if (v != e[0]) node_fail("exponent must be a single value");
    return emit(OpSpec(t).set_float("exponent", e[0]), {value(0)});
  }
  if (t == "Gelu") {  // curv's GeluTanh is ONNX Gelu with approximate="tanh"
    const std::string approx = attr_s("approximate", "none");
    if (approx != "none" && approx != "tanh") node_fail("approximate='" + approx + "' is not supported");
    return emit(OpSpec(approx == "tanh" ? "GeluTanh" : "Gelu"), {value(0)});
  }
  if (t == "Clip") {  // bounds: attributes before opset 11, constant inputs after; absent = unbounded
    auto bound = [&](int k, const char* what) -> std::optional<double> {
      if (!present(k)) return std::nullopt;
      const auto v = need_folded(k, what).doubles(what);
      if (v.size() != 1) node_fail(std::string(what) + " must be one value");
      return v[0];
    };
    std::optional<double> lo, hi;
    if (m_opset < 11) {
      if (attr("min")) lo = attr_f("min", 0.0);
      if (attr("max")) hi = attr_f("max", 0.0);
    } else {
      lo = bound(1, "min");
      hi = bound(2, "max");
    }
    OpSpec s(t);
    if (lo) s.set_float("min", *lo);
    if (hi) s.set_float("max", *hi);
    return emit(s, {value(0)});
  }
  if (t == "Max" || t == "Min") {  // variadic: a chain of binary ops (ties split at each link)
    std::vector<int> ins;
    for (int k = 0; k < m_node->input_size(); ++k)
      if (present(k)) ins.push_back(value(k));
    if (ins.empty()) node_fail("needs at least one input");
    if (ins.size() == 1) return emit(OpSpec("Identity"), ins);
    int acc = ins[0];
    for (std::size_t k = 1; k < ins.size(); ++k)
      acc = emit_named(OpSpec(t), {acc, ins[k]}, k + 1 == ins.size() ? m_node_name : m_node_name + "/" + std::to_string(k));
    m_values[m_node->output(0)] = acc;
    return;
  }
  if (t == "Where") {
    if (m_node->input_size() != 3) node_fail("takes 3 inputs (condition, X, Y), got " + std::to_string(m_node->input_size()));
    return emit(OpSpec(t), {value(0, true), value(1), value(2)});
  }
  if (t == "Einsum") {
    std::vector<int> ins;
    for (int k = 0; k < m_node->input_size(); ++k) ins.push_back(value(k));
    return emit(OpSpec(t).set("equation", attr_s("equation", "")), ins);
  }
  if (t == "Expand") {
    // A batch-dependent entry of the target becomes 1: where the input has that dim it is kept;
    // where the input has 1 there and the entry is the batch size N (a parameter expanded to the
    // batch, as cls_token.expand(B, -1, -1) exports), it is a batch axis of the op, which reads N
    // from the first data input; an error otherwise.
    const int x = value(0);
    const Folded& f = need_folded(1, "shape");
    if (!f.is_int || f.shape.size() != 1) node_fail("shape must be a 1-D integer tensor");
    const Shape in1 = shape_at(x, 1), in2 = shape_at(x, 2);
    const std::size_t r = f.i.size();
    Shape target;
    std::vector<std::int64_t> batch_axes;
    for (std::size_t j = 0; j < r; ++j) {
      if (f.n[j] == 0) {
        target.push_back(f.i[j]);
        continue;
      }
      const std::size_t off = r >= in1.size() ? r - in1.size() : 0;
      const bool has = j >= off && j - off < in1.size();
      const bool kept = has && in1[j - off] == f.i[j] + f.n[j] && in2[j - off] == f.i[j] + 2 * f.n[j];
      const bool one = !has || (in1[j - off] == 1 && in2[j - off] == 1);
      if (!kept && !(one && f.i[j] == 0 && f.n[j] == 1))
        node_fail("shape entry " + std::to_string(j) + " depends on the batch size but is neither the input's dim there nor the batch size over a 1");
      if (!kept) batch_axes.push_back(static_cast<std::int64_t>(j));
      target.push_back(1);
    }
    if (batch_axes.empty()) return emit(OpSpec(t).set_ints("shape", target), {x});
    return emit(OpSpec(t).set_ints("shape", target).set_ints("batch_axes", batch_axes), {x, m_model.inputs().at(0)});
  }
  if (t == "Tile") return emit(OpSpec(t).set_ints("repeats", need_folded(1, "repeats").ints("repeats")), {value(0)});
  if (t == "Trilu") {
    std::int64_t k = 0;
    if (present(1)) {
      const auto v = need_folded(1, "k").ints("k");
      if (v.size() != 1) node_fail("k must be one value");
      k = v[0];
    }
    return emit(OpSpec(t).set_int("k", k).set_bool("upper", attr_i("upper", 1) != 0), {value(0)});
  }
  if (t == "Range") node_fail("start, limit and delta must be constants known at load time");
  if (t == "Cast" && m_booleans.count(in_name(0)) &&
      (attr_i("to", 0) == onnx::TensorProto_DataType_BOOL || attr_i("to", 0) == onnx::TensorProto_DataType_FLOAT ||
       attr_i("to", 0) == onnx::TensorProto_DataType_DOUBLE)) {  // already 0 / 1: the same value
    m_values[m_node->output(0)] = value(0);
    m_booleans.insert(m_node->output(0));
    return;
  }
  if (t == "Cast" && attr_i("to", 0) == onnx::TensorProto_DataType_BOOL) {  // x != 0 as 0 / 1
    const int once = emit_named(OpSpec("Not"), {value(0)}, m_node_name + "/not");
    m_values[m_node->output(0)] = emit_named(OpSpec("Not"), {once}, m_node_name);
    m_booleans.insert(m_node->output(0));
    return;
  }
  // Every other unary op of elementwise_table.h: its parameter is the ONNX attribute of that name.
  // (Binary ops of the table follow below.)
  if (const OpTypeInfo* info = find_op_type(t); info && info->unary) {
    OpSpec s(t);
    for (const AttrInfo& a : info->attrs) s.set_float(a.name, attr_f(a.name, std::get<double>(*a.default_value)));
    return emit(s, {value(0)});
  }
  if (const OpTypeInfo* info = find_op_type(t); (info && info->binary) || t == "MatMul")
    return emit(OpSpec(t), {value(0), value(1)});
  if (t == "Gemm") {
    OpSpec s(t);
    s.set_bool("transA", attr_i("transA", 0) != 0)
        .set_bool("transB", attr_i("transB", 0) != 0)
        .set_float("alpha", attr_f("alpha", 1.0))
        .set_float("beta", attr_f("beta", 1.0));
    std::vector<int> ins{value(0), value(1)};
    if (present(2)) ins.push_back(value(2));
    return emit(s, ins);
  }
  if (t == "Conv" || t == "MaxPool" || t == "AveragePool") return import_conv_like(t);
  if (t == "Resize" || t == "Upsample") return import_resize(t);
  if (t == "LSTM" || t == "GRU") return import_rnn(t);
  if (t == "ConvTranspose") {
    const int x = value(0), w = value(1);
    std::vector<int> ins{x, w};
    if (present(2)) ins.push_back(value(2));
    if (attr("output_shape")) node_fail("output_shape is not supported (give pads and output_padding)");
    const std::string auto_pad = attr_s("auto_pad", "NOTSET");
    if (auto_pad != "NOTSET" && auto_pad != "VALID") node_fail("unsupported auto_pad '" + auto_pad + "'");
    std::vector<std::int64_t> kernel = attr_ints("kernel_shape");
    const Shape ws = shape_at(w, 1);
    if (kernel.empty() && ws.size() == 4) kernel = {ws[2], ws[3]};
    auto or_default = [&](const char* name, std::vector<std::int64_t> d) {
      const auto v = attr_ints(name);
      return v.empty() ? d : v;
    };
    OpSpec s(t);
    s.set_ints("kernel", kernel)
        .set_ints("strides", or_default("strides", {1, 1}))
        .set_ints("dilations", or_default("dilations", {1, 1}))
        .set_ints("pads", auto_pad == "VALID" ? std::vector<std::int64_t>{0, 0, 0, 0} : or_default("pads", {0, 0, 0, 0}))
        .set_ints("output_padding", or_default("output_padding", {0, 0}))
        .set_int("group", attr_i("group", 1));
    return emit(s, ins);
  }
  if (t == "GlobalAveragePool") return emit(OpSpec(t), {value(0)});
  if (t == "Softmax" || t == "LogSoftmax") {
    const std::int64_t r = rank_of(0);
    const std::int64_t axis0 = attr_i("axis", m_opset < 13 ? 1 : -1);
    if (axis0 < -r || axis0 >= r)
      node_fail("axis " + std::to_string(axis0) + " out of range for rank " + std::to_string(r));
    const std::int64_t axis = axis0 < 0 ? axis0 + r : axis0;
    if (m_opset < 13 && axis != r - 1)
      node_fail("axis " + std::to_string(axis) + " of rank " + std::to_string(r) +
                " (opset < 13 coerces to 2-D; only the last axis is supported)");
    return emit(OpSpec(t).set_int("axis", axis), {value(0)});
  }
  if (t == "ReduceMean" || t == "ReduceSum" || t == "ReduceMax" || t == "ReduceMin") {
    std::vector<std::int64_t> axes = attr("axes") ? attr_ints("axes")
                                     : present(1) ? need_folded(1, "axes").ints("axes")
                                                  : std::vector<std::int64_t>{};
    if (axes.empty() && attr_i("noop_with_empty_axes", 0)) return emit_unary("Identity");
    return emit(OpSpec(t).set_ints("axes", axes).set_bool("keepdims", attr_i("keepdims", 1) != 0), {value(0)});
  }
  if (t == "BatchNormalization") {
    const bool training = m_opts.batch_norm_training || attr_i("training_mode", 0) != 0;
    return emit(OpSpec(t).set_float("epsilon", attr_f("epsilon", 1e-5)).set_bool("training", training),
                {value(0), value(1), value(2), value(3, true), value(4, true)});
  }
  if (t == "InstanceNormalization")
    return emit(OpSpec(t).set_float("epsilon", attr_f("epsilon", 1e-5)), {value(0), value(1), value(2)});
  if (t == "LayerNormalization") {
    std::vector<int> ins{value(0), value(1)};
    if (present(2)) ins.push_back(value(2));
    return emit(OpSpec(t).set_int("axis", attr_i("axis", -1)).set_float("epsilon", attr_f("epsilon", 1e-5)), ins);
  }
  if (t == "Reshape") {
    const int x = value(0);
    const bool allowzero = attr_i("allowzero", 0) != 0;
    const Shape target = reshape_target(need_folded(1, "shape"), x, allowzero);
    return emit(OpSpec(t).set_ints("shape", target).set_bool("allowzero", allowzero), {x});
  }
  if (t == "Flatten") return emit(OpSpec(t).set_int("axis", attr_i("axis", 1)), {value(0)});
  if (t == "Transpose") return emit(OpSpec(t).set_ints("perm", attr_ints("perm")), {value(0)});
  if (t == "Slice") {
    OpSpec s(t);
    if (m_opset < 10) {
      s.set_ints("starts", attr_ints("starts")).set_ints("ends", attr_ints("ends")).set_ints("axes", attr_ints("axes"));
    } else {
      auto opt = [&](int k, const char* what) {
        return present(k) ? need_folded(k, what).ints(what) : std::vector<std::int64_t>{};
      };
      s.set_ints("starts", opt(1, "starts"))
          .set_ints("ends", opt(2, "ends"))
          .set_ints("axes", opt(3, "axes"))
          .set_ints("steps", opt(4, "steps"));
    }
    return emit(s, {value(0)});
  }
  if (t == "Concat") {
    std::vector<int> ins;
    for (int k = 0; k < m_node->input_size(); ++k)
      if (present(k)) ins.push_back(value(k));
    return emit(OpSpec(t).set_int("axis", attr_i("axis", 0)), ins);
  }
  if (t == "Gather" && !folded(1))  // indices from the data (token ids): an embedding lookup
    return emit(OpSpec("Embedding").set_int("axis", attr_i("axis", 0)), {value(0), value(1)});
  if (t == "Gather") {
    const Folded& idx = need_folded(1, "indices");
    return emit(OpSpec(t)
                    .set_int("axis", attr_i("axis", 0))
                    .set_ints("indices", idx.ints("indices"))
                    .set_ints("indices_shape", idx.shape),
                {value(0)});
  }
  if (t == "Unsqueeze" || t == "Squeeze") {
    std::vector<std::int64_t> axes = attr("axes") ? attr_ints("axes")
                                     : present(1) ? need_folded(1, "axes").ints("axes")
                                                  : std::vector<std::int64_t>{};
    if (t == "Unsqueeze" && axes.empty()) node_fail("Unsqueeze needs axes");
    return emit(OpSpec(t).set_ints("axes", axes), {value(0)});
  }
  if (t == "Dropout") {
    if (present(2)) {
      const auto mode = need_folded(2, "training_mode").doubles("training_mode");
      if (mode.size() != 1) node_fail("training_mode must be one value");
      if (mode[0] != 0) node_fail("training_mode=true is not supported");
    }
    return emit(OpSpec(t), {value(0)});
  }
  if (t == "Cast") {
    const auto to = attr_i("to", 0);
    const int x = value(0);
    const Value& xv = m_model.values().at(x);
    if (to == onnx::TensorProto_DataType_INT64 || to == onnx::TensorProto_DataType_INT32) {
      // Token ids computed in float (curv's export writes this Cast before such a Gather): the
      // Embedding refuses values that are not integers in range, so the Cast is the identity.
      if (!m_index_only.count(m_node->output(0)))
        node_fail("Cast of a data tensor to " + dtype_name(static_cast<int>(to)) +
                  " is supported only as the indices of a Gather (token ids)");
      m_values[m_node->output(0)] = x;
      return;
    }
    if (to != onnx::TensorProto_DataType_FLOAT && to != onnx::TensorProto_DataType_DOUBLE)
      node_fail("Cast of a data tensor to " + dtype_name(static_cast<int>(to)) + " is not supported");
    if (xv.kind == ValueKind::Input && xv.integer) {  // integer data is exact in float already
      m_values[m_node->output(0)] = x;
      return;
    }
    return emit(OpSpec(t), {x});
  }
  if (t == "Split") {
    const int x = value(0);
    const Shape xs = shape_at(x, 1), xs2 = shape_at(x, 2);
    const std::int64_t r = static_cast<std::int64_t>(xs.size());
    std::int64_t axis = attr_i("axis", 0);
    if (axis < -r || axis >= r || xs[axis < 0 ? axis + r : axis] != xs2[axis < 0 ? axis + r : axis])
      node_fail("axis " + std::to_string(axis) + " must be a fixed (non-batch) dimension");
    if (axis < 0) axis += r;
    std::vector<std::int64_t> sizes = attr("split") ? attr_ints("split")
                                      : present(1)  ? need_folded(1, "split").ints("split")
                                                    : std::vector<std::int64_t>{};
    const std::int64_t n = m_node->output_size();
    if (sizes.empty()) {
      const std::int64_t each = (xs[axis] + n - 1) / n;
      for (std::int64_t k = 0; k < n; ++k) sizes.push_back(std::clamp<std::int64_t>(xs[axis] - k * each, 0, each));
    }
    if (static_cast<std::int64_t>(sizes.size()) != n) node_fail("split sizes do not match the number of outputs");
    std::int64_t total = 0;
    for (const auto v : sizes) {
      if (v < 0) node_fail("split sizes " + shape_str(sizes) + " must be >= 0");
      total = checked_add(total, v, "split sizes " + shape_str(sizes));
    }
    if (total != xs[axis])
      node_fail("split sizes " + shape_str(sizes) + " do not add up to dim " + std::to_string(axis) + " of " +
                shape_str(xs));
    std::int64_t off = 0;
    for (std::int64_t k = 0; k < n; ++k) {
      OpSpec s("Slice");
      s.set_ints("starts", {off}).set_ints("ends", {off + sizes[k]}).set_ints("axes", {axis}).set_ints("steps", {1});
      off += sizes[k];
      if (!m_node->output(k).empty())
        m_values[m_node->output(k)] = emit_named(s, {x}, m_node_name + ":" + std::to_string(k));
    }
    return;
  }
  if (t == "Pad") {
    // pads: [x1_begin, x2_begin, ..., x1_end, x2_end, ...]
    const auto pads = m_opset < 11 ? attr_ints("pads") : need_folded(1, "pads").ints("pads");
    const std::string mode = attr_s("mode", "constant");
    double fill = m_opset < 11 ? attr_f("value", 0.0) : 0.0;
    if (m_opset >= 11 && present(2)) {
      const auto v = need_folded(2, "constant_value").doubles("constant_value");
      if (v.size() != 1) node_fail("constant_value must be one value");
      fill = v[0];
    }
    if (std::all_of(pads.begin(), pads.end(), [](std::int64_t v) { return v == 0; })) return emit(OpSpec(t), {value(0)});
    const bool spatial_only = pads.size() == 8 && pads[0] == 0 && pads[1] == 0 && pads[4] == 0 && pads[5] == 0;
    if (mode != "constant" || fill != 0.0 || !spatial_only)
      node_fail("padding " + shape_str(pads) + " (mode " + mode + ", value " + std::to_string(fill) +
                ") is not supported: only zero padding of H and W before Conv or AveragePool");
    for (const auto v : pads)
      if (v < 0 || v > kMaxTensorElements)
        node_fail("pads " + shape_str(pads) + " must be >= 0 and <= " + std::to_string(kMaxTensorElements));
    m_pending_pads[m_node->output(0)] = {in_name(0), {pads[2], pads[3], pads[6], pads[7]}, m_node_name};
    return;
  }
  node_fail("unsupported operator");
}

}  // namespace curv::onnx_detail
