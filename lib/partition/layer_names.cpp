// Per-layer parameter names collapsed, so that a 40-layer model's notes and lists stay short.
#include <algorithm>
#include <cctype>
#include <map>

#include "partition/plan.hpp"

namespace autotp {

namespace {

// Finds "layers.<digits>." in name: sets [begin, end) of the digits.
bool find_layer_index(const std::string& name, size_t& begin, size_t& end) {
  for (size_t at = name.find("layers."); at != std::string::npos;
       at = name.find("layers.", at + 1)) {
    if (at > 0 && name[at - 1] != '.') continue;
    size_t b = at + 7, e = b;
    while (e < name.size() && std::isdigit(static_cast<unsigned char>(name[e]))) ++e;
    if (e > b && e < name.size() && name[e] == '.') {
      begin = b;
      end = e;
      return true;
    }
  }
  return false;
}

std::string index_set(const std::vector<int64_t>& v) {  // sorted, distinct: "0-3,7,9-10"
  std::string out;
  for (size_t i = 0; i < v.size();) {
    size_t j = i;
    while (j + 1 < v.size() && v[j + 1] == v[j] + 1) ++j;
    out += (out.empty() ? "" : ",") + std::to_string(v[i]);
    if (j > i) out += "-" + std::to_string(v[j]);
    i = j + 1;
  }
  return out;
}

}  // namespace

std::string layer_key(const std::string& name) {
  size_t b, e;
  if (!find_layer_index(name, b, e)) return name;
  return name.substr(0, b) + "N" + name.substr(e);
}

std::vector<std::string> group_layer_names(const std::vector<std::string>& names) {
  struct Group {
    std::string prefix, suffix;  // around the layer index; prefix = the name if not per layer
    std::vector<int64_t> layers;
  };
  std::vector<Group> groups;
  std::map<std::string, size_t> index;  // layer_key -> group
  for (auto& n : names) {
    size_t b = 0, e = 0;
    const bool per_layer = find_layer_index(n, b, e);
    const std::string key = per_layer ? n.substr(0, b) + "N" + n.substr(e) : n;
    auto it = index.find(key);
    if (it == index.end()) {
      it = index.emplace(key, groups.size()).first;
      groups.push_back(per_layer ? Group{n.substr(0, b), n.substr(e), {}} : Group{n, "", {}});
    }
    if (per_layer) groups[it->second].layers.push_back(std::stoll(n.substr(b, e - b)));
  }
  std::vector<std::string> out;
  for (auto& g : groups) {
    auto v = g.layers;
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
    if (v.empty())
      out.push_back(g.prefix);
    else if (v.size() == 1)
      out.push_back(g.prefix + std::to_string(v[0]) + g.suffix);
    else
      out.push_back(g.prefix + "{" + index_set(v) + "}" + g.suffix);
  }
  return out;
}

}  // namespace autotp
