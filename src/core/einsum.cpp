// Einsum: y = sum over the contracted labels of prod_k x_k, for an equation such as
// "bhqd,bhkd->bhqk" (attention scores), "bhqk,bhkd->bhqd", "bi,oij,bj->bo" (bilinear) or "ij->ji".
// y is multilinear in the operands, so with E(x_1, ..., x_n) = y:
//   y'   = sum_k E(x_1, .., x_k', .., x_n)
//   g_k  = E_k(g, x_m for m != k)                      (g contracted onto x_k's labels)
//   g_k' = E_k(g', x_m for m != k) + sum_{m != k} E_k(g, x_m', x_l for l != k, m)
// the last sum being the second-order term. Every kernel is a sum of contractions of two or three
// factors; two factors whose labels each appear in two of (factor, factor, target) are a batched
// GEMM on gathered copies, anything else one loop over the index space of all labels. Supported: letters as labels, explicit ("->") or implicit output,
// labels summed within one operand; not supported (rejected by name): ellipsis "...", a label
// repeated within one operand or the output (diagonals), broadcasting of size-1 dims.
#include <algorithm>
#include <cctype>
#include <map>
#include <stdexcept>

#include "src/core/internal/gemm.h"
#include "src/core/ops.h"
#include "src/core/size_limits.h"

namespace curv {
namespace {

[[noreturn]] void bad(const std::string& eq, const std::string& what) {
  throw std::invalid_argument("Einsum: equation '" + eq + "' " + what);
}

// A factor of the product: data and its element stride per label (0 where the label is absent).
template <class T>
struct Factor {
  const T* data;
  std::vector<std::int64_t> stride;
};

class EinsumOp final : public OpImpl<EinsumOp> {
 public:
  explicit EinsumOp(std::string equation) : m_eq(std::move(equation)) {
    std::string e;
    for (char ch : m_eq)
      if (ch != ' ') e += ch;
    if (e.find("...") != std::string::npos) bad(m_eq, "uses an ellipsis '...', which is not supported");
    const auto arrow = e.find("->");
    const std::string lhs = e.substr(0, arrow);
    std::string cur;
    for (std::size_t i = 0; i <= lhs.size(); ++i) {
      if (i == lhs.size() || lhs[i] == ',') {
        m_in.push_back(cur);
        cur.clear();
      } else {
        cur += lhs[i];
      }
    }
    std::map<char, int> count;
    for (const auto& t : m_in) {
      for (char ch : t) {
        if (!std::isalpha(static_cast<unsigned char>(ch))) bad(m_eq, std::string("has '") + ch + "', not a letter");
        if (std::count(t.begin(), t.end(), ch) > 1)
          bad(m_eq, std::string("repeats label '") + ch + "' within operand '" + t + "' (diagonals are not supported)");
        ++count[ch];
      }
    }
    if (arrow == std::string::npos) {  // implicit: the labels used once, in alphabetical order
      for (const auto& [ch, n] : count)
        if (n == 1) m_out += ch;
    } else {
      m_out = e.substr(arrow + 2);
      for (char ch : m_out) {
        if (!count.count(ch)) bad(m_eq, std::string("has output label '") + ch + "' that no operand has");
        if (std::count(m_out.begin(), m_out.end(), ch) > 1) bad(m_eq, std::string("repeats output label '") + ch + "'");
      }
    }
    for (const auto& [ch, n] : count) m_labels += ch;
  }
  std::string type() const override { return "Einsum"; }
  OpSpec spec() const override { return OpSpec(type()).set("equation", m_eq); }
  int arity() const override { return static_cast<int>(m_in.size()); }
  bool tangent_reads_output_grad() const override { return m_in.size() > 1; }

  Shape output_shape(const std::vector<Shape>& in) const override {
    const auto dims = label_dims(in);
    Shape out;
    for (char ch : m_out) out.push_back(dims.at(pos(ch)));
    checked_numel(out, "Einsum: output " + shape_str(out));
    return out;
  }

  template <class T>
  void fwd(OpCtx<T>& c, View<T> out) const {
    const auto dims = label_dims(shapes(c));
    std::vector<Factor<T>> f;
    for (std::size_t k = 0; k < m_in.size(); ++k) f.push_back({c.in[k].data, strides(m_in[k], dims)});
    std::fill(out.data, out.data + out.size(), T(0));
    contract(dims, f, out.data, strides(m_out, dims));
  }
  template <class T>
  void bwd(OpCtx<T>& c) const {
    const auto dims = label_dims(shapes(c));
    for (std::size_t k = 0; k < m_in.size(); ++k)
      if (c.gin[k].data) grad(c, dims, k, c.gout.data, c.gin[k].data, -1, static_cast<const T*>(nullptr), false);
  }
  template <class T>
  void tan(OpCtx<T>& c) const {
    const auto dims = label_dims(shapes(c));
    const std::int64_t no = c.out.size();
    for (std::int64_t j = 0; j < c.k; ++j) {
      T* o = c.tout.data + j * no;
      std::fill(o, o + no, T(0));
      for (std::size_t k = 0; k < m_in.size(); ++k) {
        if (!c.tin[k].data) continue;
        std::vector<Factor<T>> f;
        for (std::size_t m = 0; m < m_in.size(); ++m)
          f.push_back({m == k ? c.tin[k].data + j * c.in[k].size() : c.in[m].data, strides(m_in[m], dims)});
        contract(dims, f, o, strides(m_out, dims));
      }
    }
  }
  template <class T>
  void bwdt(OpCtx<T>& c) const {
    const auto dims = label_dims(shapes(c));
    const std::int64_t no = c.out.size();
    for (std::int64_t j = 0; j < c.k; ++j)
      for (std::size_t k = 0; k < m_in.size(); ++k) {
        if (!c.tgin[k].data) continue;
        T* gk = c.tgin[k].data + j * c.in[k].size();
        grad(c, dims, k, c.tgout.data + j * no, gk, -1, static_cast<const T*>(nullptr), false);
        if (!c.second_order) continue;
        for (std::size_t m = 0; m < m_in.size(); ++m)
          if (m != k && c.tin[m].data)
            grad(c, dims, k, c.gout.data, gk, static_cast<int>(m), c.tin[m].data + j * c.in[m].size(), true);
      }
  }

 private:
  int pos(char ch) const { return static_cast<int>(m_labels.find(ch)); }
  template <class T>
  static std::vector<Shape> shapes(const OpCtx<T>& c) {
    std::vector<Shape> s;
    for (const auto& v : c.in) s.push_back(v.shape);
    return s;
  }
  // The size of every label; the operands must agree.
  std::vector<std::int64_t> label_dims(const std::vector<Shape>& in) const {
    if (in.size() != m_in.size())
      bad(m_eq, "has " + std::to_string(m_in.size()) + " operands, got " + std::to_string(in.size()) + " inputs");
    std::vector<std::int64_t> dims(m_labels.size(), -1);
    for (std::size_t k = 0; k < in.size(); ++k) {
      if (in[k].size() != m_in[k].size())
        bad(m_eq, "gives operand " + std::to_string(k) + " " + std::to_string(m_in[k].size()) + " dims, got " +
                      shape_str(in[k]));
      for (std::size_t d = 0; d < in[k].size(); ++d) {
        auto& v = dims[pos(m_in[k][d])];
        if (v >= 0 && v != in[k][d])
          bad(m_eq, std::string("has label '") + m_in[k][d] + "' of size " + std::to_string(v) + " and " +
                        std::to_string(in[k][d]) + " (shapes do not match)");
        v = in[k][d];
      }
    }
    checked_numel(Shape(dims.begin(), dims.end()), "Einsum: index space of '" + m_eq + "'");
    return dims;
  }
  // Element strides of a tensor with `labels` over the label space (0 for absent labels).
  std::vector<std::int64_t> strides(const std::string& labels, const std::vector<std::int64_t>& dims) const {
    std::vector<std::int64_t> st(m_labels.size(), 0);
    std::int64_t acc = 1;
    for (std::size_t d = labels.size(); d-- > 0;) {
      st[pos(labels[d])] = acc;
      acc *= dims[pos(labels[d])];
    }
    return st;
  }
  // Calls f(i, offset) over the labels `ls` (row-major over their dims), offset by `stride`.
  template <class F>
  static void each_offset(const std::vector<std::int64_t>& dims, const std::vector<int>& ls,
                          const std::vector<std::int64_t>& stride, F&& f) {
    std::int64_t n = 1;
    for (int l : ls) n *= dims[l];
    std::vector<std::int64_t> idx(ls.size(), 0);
    std::int64_t off = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      f(i, off);
      for (int d = static_cast<int>(ls.size()) - 1; d >= 0; --d) {
        off += stride[ls[d]];
        if (++idx[d] < dims[ls[d]]) break;
        off -= stride[ls[d]] * dims[ls[d]];
        idx[d] = 0;
      }
    }
  }
  // Two factors and a target where every label is in two or all three of them (attention's
  // "bhqd,bhkd->bhqk" and every gradient of a two-operand einsum): a batched matrix product
  // target[b, m, n] += A[b, m, k] B[b, k, n] on copies gathered into that layout. False otherwise.
  template <class T>
  static bool contract_gemm(const std::vector<std::int64_t>& dims, const std::vector<Factor<T>>& f, T* target,
                            const std::vector<std::int64_t>& ts) {
    if (f.size() != 2) return false;
    if (std::find(dims.begin(), dims.end(), 0) != dims.end()) return true;  // empty: nothing to add
    std::vector<int> bl, ml, nl, kl;
    for (int d = 0; d < static_cast<int>(dims.size()); ++d) {
      const bool a = f[0].stride[d] != 0, b = f[1].stride[d] != 0, t = ts[d] != 0;
      if (a && b && t)
        bl.push_back(d);
      else if (a && t)
        ml.push_back(d);
      else if (b && t)
        nl.push_back(d);
      else if (a && b)
        kl.push_back(d);
      else
        return false;
    }
    auto size = [&](const std::vector<int>& ls) {
      std::int64_t n = 1;
      for (int l : ls) n *= dims[l];
      return n;
    };
    auto cat = [](std::vector<int> x, const std::vector<int>& y, const std::vector<int>& z) {
      x.insert(x.end(), y.begin(), y.end());
      x.insert(x.end(), z.begin(), z.end());
      return x;
    };
    const std::int64_t B = size(bl), M = size(ml), N = size(nl), K = size(kl);
    std::vector<T> a(B * M * K), b(B * K * N), c(B * M * N);
    each_offset(dims, cat(bl, ml, kl), f[0].stride, [&](auto i, auto o) { a[i] = f[0].data[o]; });
    each_offset(dims, cat(bl, kl, nl), f[1].stride, [&](auto i, auto o) { b[i] = f[1].data[o]; });
    for (std::int64_t q = 0; q < B; ++q)
      internal::gemm(false, false, a.data() + q * M * K, M, K, b.data() + q * K * N, K, N, c.data() + q * M * N, T(1),
                     false);
    each_offset(dims, cat(bl, ml, nl), ts, [&](auto i, auto o) { target[o] += c[i]; });
    return true;
  }
  // target[.] += prod_f f[.] over the whole label space.
  template <class T>
  static void contract(const std::vector<std::int64_t>& dims, const std::vector<Factor<T>>& f, T* target,
                       const std::vector<std::int64_t>& ts) {
    if (contract_gemm(dims, f, target, ts)) return;
    const int r = static_cast<int>(dims.size());
    std::int64_t n = 1;
    for (auto d : dims) n *= d;
    if (n == 0) return;
    std::vector<std::int64_t> idx(r, 0), off(f.size(), 0);
    std::int64_t to = 0;
    for (std::int64_t e = 0; e < n; ++e) {
      T p = T(1);
      for (std::size_t k = 0; k < f.size(); ++k) p *= f[k].data[off[k]];
      target[to] += p;
      for (int d = r - 1; d >= 0; --d) {
        ++idx[d];
        to += ts[d];
        for (std::size_t k = 0; k < f.size(); ++k) off[k] += f[k].stride[d];
        if (idx[d] < dims[d]) break;
        to -= ts[d] * dims[d];
        for (std::size_t k = 0; k < f.size(); ++k) off[k] -= f[k].stride[d] * dims[d];
        idx[d] = 0;
      }
    }
  }
  // gk (+)= E_k(g, x_m for m != k), with operand `swap` replaced by `alt` when swap >= 0.
  template <class T>
  void grad(const OpCtx<T>& c, const std::vector<std::int64_t>& dims, std::size_t k, const T* g, T* gk, int swap,
            const T* alt, bool add) const {
    if (!add) std::fill(gk, gk + c.in[k].size(), T(0));
    std::vector<Factor<T>> f{{g, strides(m_out, dims)}};
    for (std::size_t m = 0; m < m_in.size(); ++m)
      if (m != k) f.push_back({static_cast<int>(m) == swap ? alt : c.in[m].data, strides(m_in[m], dims)});
    contract(dims, f, gk, strides(m_in[k], dims));
  }

  std::string m_eq, m_out, m_labels;
  std::vector<std::string> m_in;
};

}  // namespace

OpPtr make_einsum(const std::string& equation) { return std::make_shared<EinsumOp>(equation); }

}  // namespace curv
