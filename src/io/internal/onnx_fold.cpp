#include "src/io/internal/onnx_fold.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "src/core/size_limits.h"

namespace curv::onnx_fold {

namespace {

[[noreturn]] void bad(const std::string& msg) { throw std::invalid_argument(msg); }

// Folded results hold shapes, axes, masks and small constants; a larger one is a malformed file.
constexpr std::int64_t kMaxFoldedElements = std::int64_t(1) << 26;

std::int64_t folded_numel(const Shape& s, const char* op) {
  return checked_numel(s, std::string(op) + ": folded result", kMaxFoldedElements);
}

// Integer arithmetic of folded constants, with overflow as an error.
std::int64_t add(std::int64_t a, std::int64_t b, const char* op) {
  std::int64_t r;
  if (__builtin_add_overflow(a, b, &r)) bad(std::string(op) + ": integer overflow");
  return r;
}
std::int64_t sub(std::int64_t a, std::int64_t b, const char* op) {
  std::int64_t r;
  if (__builtin_sub_overflow(a, b, &r)) bad(std::string(op) + ": integer overflow");
  return r;
}
std::int64_t mul(std::int64_t a, std::int64_t b, const char* op) {
  std::int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) bad(std::string(op) + ": integer overflow");
  return r;
}

// A float that is an integer in int64 range.
std::int64_t int_of(double v, const std::string& what) {
  if (!(v >= -9223372036854775808.0 && v < 9223372036854775808.0))
    bad(what + ": " + std::to_string(v) + " is not an integer in range");
  return static_cast<std::int64_t>(v);
}

std::int64_t norm_axis(std::int64_t axis, std::int64_t rank, const char* op) {
  const std::int64_t a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank)
    bad(std::string(op) + ": axis " + std::to_string(axis) + " out of range for rank " + std::to_string(rank));
  return a;
}

std::vector<std::int64_t> strides_of(const Shape& s) {
  std::vector<std::int64_t> st(s.size(), 1);
  for (int d = static_cast<int>(s.size()) - 2; d >= 0; --d) st[d] = st[d + 1] * s[d + 1];
  return st;
}

// New tensor of `shape` whose element k is a's element src[k].
Folded take(const Folded& a, Shape shape, const std::vector<std::int64_t>& src) {
  Folded r;
  r.is_int = a.is_int;
  r.shape = std::move(shape);
  if (a.is_int) {
    for (auto k : src) {
      r.i.push_back(a.i.at(k));
      r.n.push_back(a.n.at(k));
    }
  } else {
    for (auto k : src) r.f.push_back(a.f.at(k));
  }
  return r;
}

Folded as_float(const Folded& a) {
  if (!a.is_int) return a;
  return Folded::of_floats(a.shape, a.doubles("operand"));
}

}  // namespace

bool Folded::symbolic() const {
  return std::any_of(n.begin(), n.end(), [](std::int64_t c) { return c != 0; });
}

std::vector<std::int64_t> Folded::ints(const std::string& what) const {
  if (!is_int) {
    std::vector<std::int64_t> r;
    for (double v : f) {
      if (v != std::floor(v)) bad(what + " must be integers, got " + std::to_string(v));
      r.push_back(int_of(v, what));
    }
    return r;
  }
  if (symbolic()) bad(what + " depends on the batch size");
  return i;
}

std::vector<double> Folded::doubles(const std::string& what) const {
  if (!is_int) return f;
  const auto v = ints(what);
  return {v.begin(), v.end()};
}

Folded Folded::of_ints(Shape shape, std::vector<std::int64_t> v) {
  Folded r;
  r.is_int = true;
  r.shape = std::move(shape);
  r.n.assign(v.size(), 0);
  r.i = std::move(v);
  return r;
}

Folded Folded::of_floats(Shape shape, std::vector<double> v) {
  Folded r;
  r.shape = std::move(shape);
  r.f = std::move(v);
  return r;
}

Folded shape_of(const Shape& s1, const Shape& s2) {
  Folded r = Folded::of_ints({static_cast<std::int64_t>(s1.size())}, {});
  for (std::size_t d = 0; d < s1.size(); ++d) {
    const std::int64_t c = s2[d] - s1[d];  // dim = s1 + c (N - 1)
    r.i.push_back(s1[d] - c);
    r.n.push_back(c);
  }
  return r;
}

namespace {
// Both operands taken to their numpy-broadcast shape.
std::pair<Folded, Folded> broadcast2(const std::string& op, const Folded& a, const Folded& b) {
  const std::size_t r = std::max(a.shape.size(), b.shape.size());
  Shape as(r - a.shape.size(), 1), bs(r - b.shape.size(), 1), out(r);
  as.insert(as.end(), a.shape.begin(), a.shape.end());
  bs.insert(bs.end(), b.shape.begin(), b.shape.end());
  for (std::size_t d = 0; d < r; ++d) {
    if (as[d] != bs[d] && as[d] != 1 && bs[d] != 1)
      bad(op + ": shapes " + shape_str(a.shape) + " and " + shape_str(b.shape) + " do not broadcast");
    out[d] = as[d] == 1 ? bs[d] : as[d];
  }
  const auto sa = strides_of(as), sb = strides_of(bs), so = strides_of(out);
  const std::int64_t total = folded_numel(out, op.c_str());
  std::vector<std::int64_t> ia(total), ib(total);
  for (std::int64_t k = 0; k < total; ++k) {
    std::int64_t rem = k, pa = 0, pb = 0;
    for (std::size_t d = 0; d < r; ++d) {
      const std::int64_t idx = rem / so[d];
      rem %= so[d];
      pa += (as[d] == 1 ? 0 : idx) * sa[d];
      pb += (bs[d] == 1 ? 0 : idx) * sb[d];
    }
    ia[k] = pa;
    ib[k] = pb;
  }
  return {take(a, out, ia), take(b, out, ib)};
}

// A folded value's truth: nonzero (a batch-dependent int is a size, never zero at every N).
bool truth(const Folded& a, std::int64_t k) { return a.is_int ? (a.i[k] != 0 || a.n[k] != 0) : a.f[k] != 0.0; }
}  // namespace

Folded binary(const std::string& op, const Folded& a0, const Folded& b0) {
  const bool ints = a0.is_int && b0.is_int;
  const Folded a = ints ? a0 : as_float(a0);
  const Folded b = ints ? b0 : as_float(b0);
  const bool cmp = op == "Equal" || op == "Less" || op == "Greater" || op == "And";
  if (cmp) {  // booleans as int 0 / 1
    auto [A, B] = broadcast2(op, a, b);
    Folded res = Folded::of_ints(A.shape, std::vector<std::int64_t>(A.size(), 0));
    for (std::int64_t k = 0; k < A.size(); ++k) {
      if (op == "And") {
        res.i[k] = truth(A, k) && truth(B, k);
      } else if (ints) {
        // a - b = di + dn N over batch sizes N >= 1: the result must be the same for every N
        // (Expand's export compares a batch-dependent size with -1).
        const std::int64_t di = sub(A.i[k], B.i[k], op.c_str()), dn = sub(A.n[k], B.n[k], op.c_str());
        const std::int64_t at1 = add(di, dn, op.c_str());
        int sign;  // of a - b for all N >= 1: -1, 0, 1
        if (dn == 0)
          sign = di < 0 ? -1 : di > 0 ? 1 : 0;
        else if (op == "Equal" && (sub(0, di, op.c_str()) % dn != 0 || sub(0, di, op.c_str()) / dn < 1))
          sign = 1;  // never equal: only "not equal" matters
        else if (dn > 0 && at1 > 0)
          sign = 1;
        else if (dn < 0 && at1 < 0)
          sign = -1;
        else
          bad(op + ": comparison of batch-dependent sizes depends on the batch size");
        res.i[k] = op == "Equal" ? sign == 0 : op == "Less" ? sign < 0 : sign > 0;
      } else {
        const double x = A.f[k], y = B.f[k];
        res.i[k] = op == "Equal" ? x == y : op == "Less" ? x < y : x > y;
      }
    }
    return res;
  }
  if (op == "Max" || op == "Min") {
    auto [A, B] = broadcast2(op, a, b);
    Folded res = A;
    for (std::int64_t k = 0; k < A.size(); ++k) {
      if (ints) {
        if (A.n[k] != B.n[k]) bad(op + ": comparison of batch-dependent sizes");
        const bool take_b = op == "Max" ? B.i[k] > A.i[k] : B.i[k] < A.i[k];
        if (take_b) res.i[k] = B.i[k];
      } else {
        res.f[k] = op == "Max" ? std::max(A.f[k], B.f[k]) : std::min(A.f[k], B.f[k]);
      }
    }
    return res;
  }
  const auto [A, B] = broadcast2(op, a, b);
  const std::int64_t total = A.size();
  Folded res = A;
  for (std::int64_t k = 0; k < total; ++k) {
    if (ints) {
      const std::int64_t x = A.i[k], xn = A.n[k], y = B.i[k], yn = B.n[k];
      if (op == "Add") {
        res.i[k] = add(x, y, "Add");
        res.n[k] = add(xn, yn, "Add");
      } else if (op == "Sub") {
        res.i[k] = sub(x, y, "Sub");
        res.n[k] = sub(xn, yn, "Sub");
      } else if (op == "Mul") {
        if (xn != 0 && yn != 0) bad("Mul: product of two batch-dependent sizes");
        res.i[k] = mul(x, y, "Mul");
        res.n[k] = add(mul(xn, y, "Mul"), mul(yn, x, "Mul"), "Mul");
      } else if (op == "Div") {
        if (yn != 0) bad("Div: division by a batch-dependent size");
        if (y == 0) bad("Div: integer division by zero");
        if (y == -1 && (x == std::numeric_limits<std::int64_t>::min() || xn == std::numeric_limits<std::int64_t>::min()))
          bad("Div: integer overflow");
        if (xn % y != 0 || (xn != 0 && x % y != 0))
          bad("Div: batch-dependent size not divisible by " + std::to_string(y));
        res.i[k] = x / y;
        res.n[k] = xn / y;
      } else {
        bad("cannot fold integer " + op);
      }
    } else {
      const double x = A.f[k], y = B.f[k];
      if (op == "Add")
        res.f[k] = x + y;
      else if (op == "Sub")
        res.f[k] = x - y;
      else if (op == "Mul")
        res.f[k] = x * y;
      else if (op == "Div")
        res.f[k] = x / y;
      else if (op == "Pow")
        res.f[k] = std::pow(x, y);
      else
        bad("cannot fold " + op);
    }
  }
  return res;
}

Folded unary(const std::string& op, const Folded& a) {
  if (op == "Identity") return a;
  if (op == "Not") {
    Folded r = Folded::of_ints(a.shape, std::vector<std::int64_t>(a.size(), 0));
    for (std::int64_t k = 0; k < a.size(); ++k) r.i[k] = !truth(a, k);
    return r;
  }
  if (a.is_int && op == "Abs") {
    Folded r = a;
    for (std::int64_t k = 0; k < a.size(); ++k)
      if (r.i[k] < 0 || (r.i[k] == 0 && r.n[k] < 0)) {
        r.i[k] = sub(0, r.i[k], "Abs");
        r.n[k] = sub(0, r.n[k], "Abs");
      }
    return r;
  }
  if (a.is_int) {
    if (op != "Neg") bad("cannot fold integer " + op);
    Folded r = a;
    for (auto& v : r.i) v = sub(0, v, "Neg");
    for (auto& v : r.n) v = sub(0, v, "Neg");
    return r;
  }
  Folded r = a;
  for (auto& v : r.f) {
    if (op == "Neg")
      v = -v;
    else if (op == "Sqrt")
      v = std::sqrt(v);
    else if (op == "Exp")
      v = std::exp(v);
    else if (op == "Log")
      v = std::log(v);
    else if (op == "Reciprocal")
      v = 1.0 / v;
    else if (op == "Relu")
      v = std::max(v, 0.0);
    else if (op == "Abs")
      v = std::abs(v);
    else
      bad("cannot fold " + op);
  }
  return r;
}

Folded cast(const Folded& a, bool to_int) {
  if (a.is_int == to_int) return a;
  if (!to_int) return as_float(a);
  Folded r = Folded::of_ints(a.shape, {});
  for (double v : a.f) r.i.push_back(int_of(std::trunc(v), "Cast"));
  r.n.assign(r.i.size(), 0);
  return r;
}

Folded gather(const Folded& a, std::int64_t axis, const Folded& indices) {
  const auto idx = indices.ints("Gather indices");
  const std::int64_t ax = norm_axis(axis, a.shape.size(), "Gather");
  const std::int64_t dim = a.shape[ax];
  Shape out(a.shape.begin(), a.shape.begin() + ax);
  out.insert(out.end(), indices.shape.begin(), indices.shape.end());
  out.insert(out.end(), a.shape.begin() + ax + 1, a.shape.end());
  folded_numel(out, "Gather");
  std::int64_t outer = 1, inner = 1;
  for (std::int64_t d = 0; d < ax; ++d) outer *= a.shape[d];
  for (std::size_t d = ax + 1; d < a.shape.size(); ++d) inner *= a.shape[d];
  std::vector<std::int64_t> src;
  for (std::int64_t o = 0; o < outer; ++o)
    for (std::int64_t j : idx) {
      const std::int64_t jj = j < 0 ? j + dim : j;
      if (jj < 0 || jj >= dim)
        bad("Gather: index " + std::to_string(j) + " out of range for dim " + std::to_string(dim));
      for (std::int64_t q = 0; q < inner; ++q) src.push_back((o * dim + jj) * inner + q);
    }
  return take(a, out, src);
}

Folded unsqueeze(const Folded& a, std::vector<std::int64_t> axes) {
  const std::int64_t r = a.shape.size() + axes.size();
  for (auto& ax : axes) ax = norm_axis(ax, r, "Unsqueeze");
  std::sort(axes.begin(), axes.end());
  if (std::adjacent_find(axes.begin(), axes.end()) != axes.end()) bad("Unsqueeze: axes repeat an axis");
  Shape out;
  std::size_t k = 0, j = 0;
  for (std::int64_t d = 0; d < r; ++d) {
    if (j < axes.size() && axes[j] == d) {
      out.push_back(1);
      ++j;
    } else {
      out.push_back(a.shape.at(k++));
    }
  }
  Folded res = a;
  res.shape = out;
  return res;
}

Folded squeeze(const Folded& a, std::vector<std::int64_t> axes) {
  const std::int64_t r = a.shape.size();
  for (auto& ax : axes) ax = norm_axis(ax, r, "Squeeze");
  Shape out;
  for (std::int64_t d = 0; d < r; ++d) {
    const bool listed = std::find(axes.begin(), axes.end(), d) != axes.end();
    if (listed && a.shape[d] != 1) bad("Squeeze: dim " + std::to_string(d) + " is not 1");
    if (!(listed || (axes.empty() && a.shape[d] == 1))) out.push_back(a.shape[d]);
  }
  Folded res = a;
  res.shape = out;
  return res;
}

Folded concat(const std::vector<const Folded*>& parts, std::int64_t axis) {
  if (parts.empty()) bad("Concat: no inputs");
  bool ints = true;
  for (auto* p : parts) ints = ints && p->is_int;
  std::vector<Folded> ps;
  for (auto* p : parts) ps.push_back(ints ? *p : as_float(*p));
  const std::int64_t ax = norm_axis(axis, ps[0].shape.size(), "Concat");
  Shape out = ps[0].shape;
  out[ax] = 0;
  for (auto& p : ps) {
    if (p.shape.size() != out.size()) bad("Concat: rank mismatch");
    for (std::size_t d = 0; d < out.size(); ++d)
      if (static_cast<std::int64_t>(d) != ax && p.shape[d] != out[d])
        bad("Concat: inputs " + shape_str(ps[0].shape) + " and " + shape_str(p.shape) + " differ off the axis");
    out[ax] = add(out[ax], p.shape[ax], "Concat");
  }
  folded_numel(out, "Concat");
  std::int64_t outer = 1;
  for (std::int64_t d = 0; d < ax; ++d) outer *= out[d];
  Folded r = ints ? Folded::of_ints(out, {}) : Folded::of_floats(out, {});
  for (std::int64_t o = 0; o < outer; ++o)
    for (auto& p : ps) {
      const std::int64_t chunk = p.size() / std::max<std::int64_t>(outer, 1);
      for (std::int64_t q = 0; q < chunk; ++q) {
        const std::int64_t k = o * chunk + q;
        if (ints) {
          r.i.push_back(p.i[k]);
          r.n.push_back(p.n[k]);
        } else {
          r.f.push_back(p.f[k]);
        }
      }
    }
  return r;
}

Folded slice(const Folded& a, const std::vector<std::int64_t>& starts, const std::vector<std::int64_t>& ends,
             std::vector<std::int64_t> axes, std::vector<std::int64_t> steps) {
  const std::int64_t r = a.shape.size();
  if (axes.empty())
    for (std::size_t k = 0; k < starts.size(); ++k) axes.push_back(static_cast<std::int64_t>(k));
  if (steps.empty()) steps.assign(starts.size(), 1);
  if (ends.size() != starts.size() || axes.size() != starts.size() || steps.size() != starts.size())
    bad("Slice: starts, ends, axes and steps differ in length");
  std::vector<std::int64_t> st(r, 0), sp(r, 1);
  Shape out = a.shape;
  for (std::size_t k = 0; k < starts.size(); ++k) {
    const std::int64_t ax = norm_axis(axes[k], r, "Slice");
    const std::int64_t dim = a.shape[ax], step = steps[k];
    if (step == 0 || step == std::numeric_limits<std::int64_t>::min()) bad("Slice: step " + std::to_string(step));
    std::int64_t s = starts[k] < 0 ? starts[k] + dim : starts[k];
    std::int64_t e = ends[k] < 0 ? ends[k] + dim : ends[k];
    if (step > 0) {
      s = std::clamp<std::int64_t>(s, 0, dim);
      e = std::clamp<std::int64_t>(e, 0, dim);
      out[ax] = e > s ? (e - s - 1) / step + 1 : 0;
    } else {
      s = std::clamp<std::int64_t>(s, 0, dim - 1);
      e = std::clamp<std::int64_t>(e, -1, dim - 1);
      out[ax] = s > e ? (s - e - 1) / -step + 1 : 0;
    }
    st[ax] = s;
    sp[ax] = step;
  }
  const auto sa = strides_of(a.shape), so = strides_of(out);
  std::vector<std::int64_t> src;
  for (std::int64_t k = 0; k < numel(out); ++k) {
    std::int64_t rem = k, p = 0;
    for (std::int64_t d = 0; d < r; ++d) {
      const std::int64_t idx = rem / so[d];
      rem %= so[d];
      p += (st[d] + idx * sp[d]) * sa[d];
    }
    src.push_back(p);
  }
  return take(a, out, src);
}

Folded reshape(const Folded& a, const std::vector<std::int64_t>& target, bool allowzero) {
  Shape out;
  std::int64_t known = 1, infer = -1;
  for (std::size_t d = 0; d < target.size(); ++d) {
    std::int64_t v = target[d];
    if (v == 0 && !allowzero) {
      if (d >= a.shape.size()) bad("Reshape: 0 at position beyond the input rank of " + shape_str(a.shape));
      v = a.shape[d];
    }
    if (v == -1) {
      if (infer >= 0) bad("Reshape: more than one -1 in " + shape_str(target));
      infer = static_cast<std::int64_t>(d);
      out.push_back(1);
      continue;
    }
    if (v < 0) bad("Reshape: negative dim in " + shape_str(target));
    out.push_back(v);
    known = mul(known, v, "Reshape");
  }
  if (infer >= 0) out[infer] = known ? a.size() / known : 0;
  const bool fits = infer >= 0 ? (known == 0 ? a.size() == 0 : a.size() % known == 0) : known == a.size();
  if (!fits) bad("Reshape: cannot reshape " + shape_str(a.shape) + " to " + shape_str(target));
  Folded r = a;
  r.shape = out;
  return r;
}

Folded transpose(const Folded& a, std::vector<std::int64_t> perm) {
  const std::int64_t r = a.shape.size();
  if (perm.empty())
    for (std::int64_t d = r - 1; d >= 0; --d) perm.push_back(d);
  std::vector<bool> seen(r, false);
  if (static_cast<std::int64_t>(perm.size()) != r) bad("Transpose: perm " + shape_str(perm) + " does not fit " + shape_str(a.shape));
  for (auto p : perm) {
    const auto d = norm_axis(p, r, "Transpose");
    if (seen[d]) bad("Transpose: perm " + shape_str(perm) + " repeats an axis");
    seen[d] = true;
  }
  Shape out;
  for (auto p : perm) out.push_back(a.shape.at(norm_axis(p, r, "Transpose")));
  const auto sa = strides_of(a.shape), so = strides_of(out);
  std::vector<std::int64_t> src;
  for (std::int64_t k = 0; k < numel(out); ++k) {
    std::int64_t rem = k, p = 0;
    for (std::int64_t d = 0; d < r; ++d) {
      p += (rem / so[d]) * sa[norm_axis(perm[d], r, "Transpose")];
      rem %= so[d];
    }
    src.push_back(p);
  }
  return take(a, out, src);
}

Folded constant_of_shape(const std::vector<std::int64_t>& shape, const Folded& value) {
  if (value.size() != 1) bad("ConstantOfShape: value must have one element");
  return take(value, shape, std::vector<std::int64_t>(folded_numel(shape, "ConstantOfShape"), 0));
}

Folded where(const Folded& c, const Folded& x0, const Folded& y0) {
  const bool ints = x0.is_int && y0.is_int;
  const Folded x = ints ? x0 : as_float(x0), y = ints ? y0 : as_float(y0);
  // Broadcast the three: (c, x), then (c, y) at that shape, then x again at the final shape.
  auto [c1, x1] = broadcast2("Where", c, x);
  auto [c2, y2] = broadcast2("Where", c1, y);
  auto [x2, y3] = broadcast2("Where", x1, y2);
  auto [c3, x3] = broadcast2("Where", c2, x2);
  Folded r = x3;
  for (std::int64_t k = 0; k < r.size(); ++k) {
    if (truth(c3, k)) continue;
    if (ints) {
      r.i[k] = y3.i[k];
      r.n[k] = y3.n[k];
    } else {
      r.f[k] = y3.f[k];
    }
  }
  return r;
}

Folded expand(const Folded& a, const std::vector<std::int64_t>& shape) {
  for (auto d : shape)
    if (d < 0) bad("Expand: negative dim in shape " + shape_str(shape));
  Folded ones = Folded::of_ints(shape, std::vector<std::int64_t>(folded_numel(shape, "Expand"), 0));
  return broadcast2("Expand", a, ones).first;
}

Folded tile(const Folded& a, const std::vector<std::int64_t>& repeats) {
  if (repeats.size() != a.shape.size())
    bad("Tile: repeats " + shape_str(repeats) + " must have one value per dim of " + shape_str(a.shape));
  Shape out = a.shape;
  for (std::size_t d = 0; d < out.size(); ++d) {
    if (repeats[d] < 0) bad("Tile: negative repeat in " + shape_str(repeats));
    out[d] = mul(out[d], repeats[d], "Tile");
  }
  const auto sa = strides_of(a.shape), so = strides_of(out);
  std::vector<std::int64_t> src(folded_numel(out, "Tile"));
  for (std::int64_t k = 0; k < static_cast<std::int64_t>(src.size()); ++k) {
    std::int64_t rem = k, p = 0;
    for (std::size_t d = 0; d < out.size(); ++d) {
      p += ((rem / so[d]) % a.shape[d]) * sa[d];
      rem %= so[d];
    }
    src[k] = p;
  }
  return take(a, out, src);
}

Folded trilu(const Folded& a, std::int64_t k, bool upper) {
  if (a.shape.size() < 2) bad("Trilu: input must have rank >= 2, got " + shape_str(a.shape));
  const std::int64_t rows = a.shape[a.shape.size() - 2], cols = a.shape.back();
  Folded r = a;
  for (std::int64_t e = 0; e < r.size(); ++e) {
    const std::int64_t i = (e / cols) % rows, j = e % cols;
    // lower keeps j - i <= k, upper keeps j - i >= k
    const bool keep = upper ? j - i >= k : j - i <= k;
    if (keep) continue;
    if (r.is_int) {
      r.i[e] = 0;
      r.n[e] = 0;
    } else {
      r.f[e] = 0.0;
    }
  }
  return r;
}

Folded range(const Folded& start, const Folded& limit, const Folded& delta) {
  if (start.size() != 1 || limit.size() != 1 || delta.size() != 1) bad("Range: start, limit and delta must be scalars");
  if (start.is_int && limit.is_int && delta.is_int) {
    const std::int64_t s = start.ints("Range start")[0], l = limit.ints("Range limit")[0],
                       d = delta.ints("Range delta")[0];
    if (d == 0) bad("Range: delta must not be 0");
    const double n = std::ceil((static_cast<double>(l) - static_cast<double>(s)) / static_cast<double>(d));
    const std::int64_t count = n > 0 ? static_cast<std::int64_t>(std::min(n, double(kMaxFoldedElements) + 1)) : 0;
    folded_numel({count}, "Range");
    std::vector<std::int64_t> v(count);
    for (std::int64_t k = 0; k < count; ++k) v[k] = s + k * d;
    return Folded::of_ints({count}, std::move(v));
  }
  const double s = start.doubles("Range start")[0], l = limit.doubles("Range limit")[0],
               d = delta.doubles("Range delta")[0];
  if (d == 0 || !std::isfinite(d) || !std::isfinite(s) || !std::isfinite(l))
    bad("Range: start, limit and delta must be finite and delta nonzero");
  const double n = std::ceil((l - s) / d);
  const std::int64_t count = n > 0 ? static_cast<std::int64_t>(std::min(n, double(kMaxFoldedElements) + 1)) : 0;
  folded_numel({count}, "Range");
  std::vector<double> v(count);
  for (std::int64_t k = 0; k < count; ++k) v[k] = s + static_cast<double>(k) * d;
  return Folded::of_floats({count}, std::move(v));
}

}  // namespace curv::onnx_fold
