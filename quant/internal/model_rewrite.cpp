#include "quant/internal/model_rewrite.h"

#include <stdexcept>
#include <string>

namespace curv::quant::internal {

Model splice_inputs(const Model& m, const std::vector<Splice>& splices) {
  for (const Splice& s : splices)
    if (s.node < 0 || s.node >= static_cast<int>(m.nodes().size()) || s.slot < 0 ||
        s.slot >= static_cast<int>(m.nodes()[s.node].inputs.size()))
      throw std::invalid_argument("splice_inputs: node " + std::to_string(s.node) + " input " + std::to_string(s.slot) +
                                  " does not exist");
  Model r;
  std::vector<int> map(m.values().size(), -1);
  for (int i : m.inputs()) {
    const Value& in = m.values().at(i);
    map[i] = r.add_input(in.name, in.shape, in.integer);
  }
  for (const ParamInfo& p : m.params()) map[p.value] = r.add_parameter(p.name, m.param(static_cast<int>(&p - m.params().data())));
  for (std::size_t v = 0; v < m.values().size(); ++v) {
    const Value& val = m.values()[v];
    if (val.kind == ValueKind::Constant) map[v] = r.add_constant(val.name, m.constant(val.index));
  }
  for (std::size_t k = 0; k < m.nodes().size(); ++k) {
    const Node& n = m.nodes()[k];
    std::vector<int> ins;
    for (int v : n.inputs) ins.push_back(map.at(v));
    for (const Splice& s : splices)
      if (s.node == static_cast<int>(k)) ins[s.slot] = s.make(r, ins[s.slot]);
    map[n.output] = r.add_node(n.name, n.op, ins);
  }
  r.set_output(map.at(m.output()));
  r.meta() = m.meta();
  return r;
}

}  // namespace curv::quant::internal
