// The ONNX importer, part 2: mapping of non-constant nodes to engine ops (with their folded
// constant operands turned into attributes).
#include <algorithm>
#include <cmath>

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
  json a = json::object();
  // A zero Pad in front merges into the op's pads (for AveragePool: padded zeros are counted).
  const PendingPad* pad = nullptr;
  if (const auto p = m_pending_pads.find(in_name(0)); p != m_pending_pads.end()) pad = &p->second;
  if (pad && t == "MaxPool") node_fail("zero padding (node '" + pad->node + "') before MaxPool is not supported");
  const int x = pad ? value_of(pad->source) : value(0);
  Shape xs = shape_at(x, 1);
  if (pad && xs.size() == 4) {
    xs[2] += pad->pads[0] + pad->pads[2];
    xs[3] += pad->pads[1] + pad->pads[3];
  }
  if (xs.size() != 4) node_fail("only 2-D (NCHW) inputs are supported, got " + shape_str(xs));
  std::vector<std::int64_t> kernel = attr_ints("kernel_shape");
  std::vector<int> ins{x};
  if (t == "Conv") {
    const int w = value(1);
    ins.push_back(w);
    if (present(2)) ins.push_back(value(2));
    const Shape ws = shape_at(w, 1);
    if (kernel.empty() && ws.size() == 4) kernel = {ws[2], ws[3]};
    a["group"] = attr_i("group", 1);
  }
  if (kernel.size() != 2) node_fail("kernel_shape must have 2 values (only 2-D is supported)");
  std::vector<std::int64_t> strides = attr_ints("strides"), dil = attr_ints("dilations"), pads = attr_ints("pads");
  if (strides.empty()) strides = {1, 1};
  if (dil.empty()) dil = {1, 1};
  if (pads.empty()) pads = {0, 0, 0, 0};
  const std::string auto_pad = attr_s("auto_pad", "NOTSET");
  if (auto_pad == "VALID") {
    pads = {0, 0, 0, 0};
  } else if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    for (int d = 0; d < 2; ++d) {
      const std::int64_t in = xs[2 + d], out = (in + strides[d] - 1) / strides[d];
      const std::int64_t total = std::max<std::int64_t>(0, (out - 1) * strides[d] + (kernel[d] - 1) * dil[d] + 1 - in);
      const std::int64_t small = total / 2, big = total - small;
      pads[d] = auto_pad == "SAME_UPPER" ? small : big;
      pads[2 + d] = auto_pad == "SAME_UPPER" ? big : small;
    }
  } else if (auto_pad != "NOTSET") {
    node_fail("unsupported auto_pad '" + auto_pad + "'");
  }
  if (attr_i("storage_order", 0) != 0) node_fail("unsupported storage_order=1");
  bool count_include_pad = attr_i("count_include_pad", 0) != 0;
  if (pad) {
    const bool own = std::any_of(pads.begin(), pads.end(), [](std::int64_t v) { return v != 0; });
    if (t == "AveragePool" && own && !count_include_pad)
      node_fail("explicit Pad before an AveragePool that excludes its own padding is not supported");
    for (int d = 0; d < 4; ++d) pads[d] += pad->pads[d];
    count_include_pad = true;
  }
  a["kernel"] = kernel;
  a["strides"] = strides;
  a["dilations"] = dil;
  a["pads"] = pads;
  if (t != "Conv") {
    a["ceil_mode"] = attr_i("ceil_mode", 0) != 0;
    a["count_include_pad"] = count_include_pad;
  }
  emit({t, a}, ins);
}

void Importer::import_op(const std::string& t) {
  static const std::set<std::string> unary{"Relu", "Sigmoid", "Tanh", "Erf",        "Sqrt",
                                           "Exp",  "Log",     "Neg",  "Reciprocal", "Identity"};
  if (unary.count(t)) return emit_unary(t);
  if (t == "LeakyRelu") return emit({t, {{"alpha", attr_f("alpha", 0.01)}}}, {value(0)});
  if (t == "Add" || t == "Sub" || t == "Mul" || t == "Div") return emit({t, json::object()}, {value(0), value(1)});
  if (t == "MatMul") return emit({t, json::object()}, {value(0), value(1)});
  if (t == "Pow") {
    const auto e = need_folded(1, "exponent").doubles("exponent");
    for (double v : e)
      if (v != e.at(0)) node_fail("exponent must be a single value");
    if (e.empty()) node_fail("empty exponent");
    return emit({t, {{"exponent", e[0]}}}, {value(0)});
  }
  if (t == "Gemm") {
    json a{{"transA", attr_i("transA", 0) != 0},
           {"transB", attr_i("transB", 0) != 0},
           {"alpha", attr_f("alpha", 1.0)},
           {"beta", attr_f("beta", 1.0)}};
    std::vector<int> ins{value(0), value(1)};
    if (present(2)) ins.push_back(value(2));
    return emit({t, a}, ins);
  }
  if (t == "Conv" || t == "MaxPool" || t == "AveragePool") return import_conv_like(t);
  if (t == "GlobalAveragePool") return emit({t, json::object()}, {value(0)});
  if (t == "Softmax" || t == "LogSoftmax") {
    const std::int64_t r = rank_of(0);
    std::int64_t axis = attr_i("axis", m_opset < 13 ? 1 : -1);
    if (axis < 0) axis += r;
    if (m_opset < 13 && axis != r - 1)
      node_fail("axis " + std::to_string(axis) + " of rank " + std::to_string(r) +
                " (opset < 13 coerces to 2-D; only the last axis is supported)");
    return emit({t, {{"axis", axis}}}, {value(0)});
  }
  if (t == "ReduceMean" || t == "ReduceSum") {
    std::vector<std::int64_t> axes = attr("axes") ? attr_ints("axes")
                                     : present(1) ? need_folded(1, "axes").ints("axes")
                                                  : std::vector<std::int64_t>{};
    if (axes.empty() && attr_i("noop_with_empty_axes", 0)) return emit_unary("Identity");
    return emit({t, {{"axes", axes}, {"keepdims", attr_i("keepdims", 1) != 0}}}, {value(0)});
  }
  if (t == "BatchNormalization") {
    const bool training = m_opts.batch_norm_training || attr_i("training_mode", 0) != 0;
    return emit({t, {{"epsilon", attr_f("epsilon", 1e-5)}, {"training", training}}},
                {value(0), value(1), value(2), value(3, true), value(4, true)});
  }
  if (t == "LayerNormalization") {
    std::vector<int> ins{value(0), value(1)};
    if (present(2)) ins.push_back(value(2));
    return emit({t, {{"axis", attr_i("axis", -1)}, {"epsilon", attr_f("epsilon", 1e-5)}}}, ins);
  }
  if (t == "Reshape") {
    const int x = value(0);
    const bool allowzero = attr_i("allowzero", 0) != 0;
    const Shape target = reshape_target(need_folded(1, "shape"), x, allowzero);
    return emit({t, {{"shape", target}, {"allowzero", allowzero}}}, {x});
  }
  if (t == "Flatten") return emit({t, {{"axis", attr_i("axis", 1)}}}, {value(0)});
  if (t == "Transpose") return emit({t, {{"perm", attr_ints("perm")}}}, {value(0)});
  if (t == "Slice") {
    json a;
    if (m_opset < 10) {
      a = {{"starts", attr_ints("starts")}, {"ends", attr_ints("ends")}, {"axes", attr_ints("axes")}};
    } else {
      auto opt = [&](int k, const char* what) {
        return present(k) ? need_folded(k, what).ints(what) : std::vector<std::int64_t>{};
      };
      a = {
          {"starts", opt(1, "starts")}, {"ends", opt(2, "ends")}, {"axes", opt(3, "axes")}, {"steps", opt(4, "steps")}};
    }
    return emit({t, a}, {value(0)});
  }
  if (t == "Concat") {
    std::vector<int> ins;
    for (int k = 0; k < m_node->input_size(); ++k)
      if (present(k)) ins.push_back(value(k));
    return emit({t, {{"axis", attr_i("axis", 0)}}}, ins);
  }
  if (t == "Gather") {
    const Folded& idx = need_folded(1, "indices");
    return emit({t, {{"axis", attr_i("axis", 0)}, {"indices", idx.ints("indices")}, {"indices_shape", idx.shape}}},
                {value(0)});
  }
  if (t == "Unsqueeze" || t == "Squeeze") {
    std::vector<std::int64_t> axes = attr("axes") ? attr_ints("axes")
                                     : present(1) ? need_folded(1, "axes").ints("axes")
                                                  : std::vector<std::int64_t>{};
    if (t == "Unsqueeze" && axes.empty()) node_fail("Unsqueeze needs axes");
    return emit({t, {{"axes", axes}}}, {value(0)});
  }
  if (t == "Dropout") {
    if (present(2) && need_folded(2, "training_mode").doubles("training_mode").at(0) != 0)
      node_fail("training_mode=true is not supported");
    return emit({t, json::object()}, {value(0)});
  }
  if (t == "Cast") {
    const auto to = attr_i("to", 0);
    if (to != onnx::TensorProto_DataType_FLOAT && to != onnx::TensorProto_DataType_DOUBLE)
      node_fail("Cast of a data tensor to " + dtype_name(static_cast<int>(to)) + " is not supported");
    return emit({t, json::object()}, {value(0)});
  }
  if (t == "Gelu") {
    if (attr_s("approximate", "none") != "none")
      node_fail("approximate='" + attr_s("approximate", "") + "' is not supported");
    return emit_unary("Gelu");
  }
  if (t == "Clip") {
    // clip(x, lo, hi) = lo + relu(x - lo) - relu(x - hi): exact, with the same derivatives a.e.
    std::optional<double> lo, hi;
    if (m_opset < 11) {
      if (attr("min")) lo = attr_f("min", 0.0);
      if (attr("max")) hi = attr_f("max", 0.0);
    } else {
      if (present(1)) lo = need_folded(1, "min").doubles("min").at(0);
      if (present(2)) hi = need_folded(2, "max").doubles("max").at(0);
    }
    const int x = value(0);
    const std::string& b = m_node_name;
    const json none = json::object();
    int y = x;
    if (lo) {
      const int c = scalar_constant(b + "/min", *lo);
      const int r = emit_named({"Relu", none}, {emit_named({"Sub", none}, {x, c}, b + "/sub_min")}, b + "/relu_min");
      y = emit_named({"Add", none}, {c, r}, b + "/add_min");
    }
    if (hi) {
      const int c = scalar_constant(b + "/max", *hi);
      const int r = emit_named({"Relu", none}, {emit_named({"Sub", none}, {x, c}, b + "/sub_max")}, b + "/relu_max");
      y = emit_named({"Sub", none}, {y, r}, b + "/sub_relu_max");
    }
    if (y == x) y = emit_named({"Identity", none}, {x}, b);
    m_values[m_node->output(0)] = y;
    return;
  }
  if (t == "Split") {
    const int x = value(0);
    const Shape xs = shape_at(x, 1), xs2 = shape_at(x, 2);
    std::int64_t axis = attr_i("axis", 0);
    if (axis < 0) axis += static_cast<std::int64_t>(xs.size());
    if (axis < 0 || axis >= static_cast<std::int64_t>(xs.size()) || xs[axis] != xs2[axis])
      node_fail("axis " + std::to_string(attr_i("axis", 0)) + " must be a fixed (non-batch) dimension");
    std::vector<std::int64_t> sizes = attr("split") ? attr_ints("split")
                                      : present(1)  ? need_folded(1, "split").ints("split")
                                                    : std::vector<std::int64_t>{};
    const std::int64_t n = m_node->output_size();
    if (sizes.empty()) {
      const std::int64_t each = (xs[axis] + n - 1) / n;
      for (std::int64_t k = 0; k < n; ++k) sizes.push_back(std::min(each, xs[axis] - k * each));
    }
    if (static_cast<std::int64_t>(sizes.size()) != n) node_fail("split sizes do not match the number of outputs");
    std::int64_t off = 0;
    for (std::int64_t k = 0; k < n; ++k) {
      const json a{{"starts", {off}}, {"ends", {off + sizes[k]}}, {"axes", {axis}}, {"steps", {1}}};
      off += sizes[k];
      if (!m_node->output(k).empty())
        m_values[m_node->output(k)] = emit_named({"Slice", a}, {x}, m_node_name + ":" + std::to_string(k));
    }
    return;
  }
  if (t == "Pad") {
    // pads: [x1_begin, x2_begin, ..., x1_end, x2_end, ...]
    const auto pads = m_opset < 11 ? attr_ints("pads") : need_folded(1, "pads").ints("pads");
    const std::string mode = attr_s("mode", "constant");
    const double fill = m_opset < 11 ? attr_f("value", 0.0)
                        : present(2) ? need_folded(2, "constant_value").doubles("constant_value").at(0)
                                     : 0.0;
    if (std::all_of(pads.begin(), pads.end(), [](std::int64_t v) { return v == 0; }))
      return emit({t, json::object()}, {value(0)});
    const bool spatial_only = pads.size() == 8 && pads[0] == 0 && pads[1] == 0 && pads[4] == 0 && pads[5] == 0;
    if (mode != "constant" || fill != 0.0 || !spatial_only)
      node_fail("padding " + shape_str(pads) + " (mode " + mode + ", value " + std::to_string(fill) +
                ") is not supported: only zero padding of H and W before Conv or AveragePool");
    m_pending_pads[m_node->output(0)] = {in_name(0), {pads[2], pads[3], pads[6], pads[7]}, m_node_name};
    return;
  }
  node_fail("unsupported operator");
}

}  // namespace curv::onnx_detail
