#pragma once
/// \file linear_layers.h
/// The parameterized linear layers of a model as K-FAC sees them: y = W a (+ b) applied at T
/// positions per sample, with W viewed as an [out, in] matrix whatever its storage.
///
///   Gemm  Y = alpha X op(W) + beta b   X [n, in]:  T = 1, a = alpha x, the bias input is beta
///   MatMul X W (+ b by a following Add)  X [n, ..., in], W [in, out]: T = the middle dims
///   Conv  W [out, C, kh, kw] (+ b)      T = Ho Wo output positions, a = the patch of C kh kw
///                                        inputs under the window (im2col, zero padding)
///
/// With a bias, the layer's input gets an appended constant (beta for Gemm, 1 otherwise) and its
/// weight an appended column: W~ = [W | b] of shape [out, in + 1]. Unsupported parameterized
/// nodes (grouped convolutions, a Gemm whose weight is input A or with transA, a MatMul whose
/// weight is not its 2-D second input, parameters of other ops) are listed with the reason, so a
/// caller that needs every parameter can name what it cannot cover.
#include <Eigen/Core>
#include <cstdint>
#include <string>
#include <vector>

#include "src/core/model.h"

namespace curv {

struct LinearLayer {
  enum class Kind { Gemm, MatMul, Conv };
  std::string name;  // the layer name: the weight's name without its last ".suffix"
  int node = -1;     // the Gemm, MatMul or Conv node
  Kind kind = Kind::Gemm;
  int weight = -1;                 // index into Model::params()
  int bias = -1;                   // index into Model::params(); -1: none
  int bias_node = -1;              // MatMul: the Add node adding the bias (-1: none)
  std::int64_t in = 0, out = 0;    // W as [out, in] (in = C kh kw for a Conv)
  std::int64_t positions = 1;      // T: positions per sample where W is applied
  bool weight_in_out = false;      // W is stored [in, out] (Gemm transB = 0, MatMul)
  double alpha = 1, beta = 1;      // Gemm scalars (1 otherwise)
  std::vector<int> params;         // weight and bias, ascending (the layer's block order)
  std::int64_t size = 0;           // out (in + has bias)

  bool has_bias() const { return bias >= 0; }
  /// Rows of the input factor: in + 1 with a bias.
  std::int64_t in_ext() const { return in + (has_bias() ? 1 : 0); }
};

struct UnsupportedParam {
  int param = -1;       // index into Model::params()
  std::string reason;   // e.g. "node 'c1/Conv' is a grouped convolution (group = 4)"
};

struct LinearLayers {
  std::vector<LinearLayer> layers;         // in node order
  std::vector<UnsupportedParam> unsupported;  // parameters of no supported layer, in param order
};

LinearLayers find_linear_layers(const Model& model);

/// The layer's input at its T positions as rows of an [n T, in_ext] matrix (row s T + t: sample s,
/// position t), scaled by alpha and with the constant bias column, from the node's first input x
/// (row-major, n samples).
template <class T>
Eigen::MatrixXd expand_layer_input(const Model& model, const LinearLayer& layer, const T* x, std::int64_t n);

/// The cotangent of the layer's output y (row-major, n samples; [n, out, Ho, Wo] for a Conv,
/// [n, ..., out] otherwise) as an [n T, out] matrix matching expand_layer_input's rows.
template <class T>
Eigen::MatrixXd expand_layer_output(const LinearLayer& layer, const T* gy, std::int64_t n);

/// The same rows in the model's precision T, written into `a` / `g` (resized): no conversion, and
/// for a Conv the im2col goes straight into a's columns (column-major [n T, in_ext] is im2col's
/// [in, n T] layout). What a float32 model's K-FAC accumulates from without a float64 copy.
template <class T>
void expand_layer_input_to(const Model& model, const LinearLayer& layer, const T* x, std::int64_t n,
                           Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>& a);
template <class T>
void expand_layer_output_to(const LinearLayer& layer, const T* gy, std::int64_t n,
                            Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>& g);

/// The layer's block vector (params in ascending order, as Model::params() stores them) as
/// W~ [out, in_ext], and back.
Eigen::MatrixXd layer_matrix(const Model& model, const LinearLayer& layer, const double* v);
void layer_vector(const Model& model, const LinearLayer& layer, const Eigen::MatrixXd& W, double* v);

}  // namespace curv
