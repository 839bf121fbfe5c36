#include "io/convert_common.hpp"

#include <cctype>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "io/hf_checkpoint.hpp"

namespace autotp {

std::optional<DType> parse_out_dtype(const std::string& s) {
  std::string u;
  for (char c : s) u += char(std::toupper(static_cast<unsigned char>(c)));
  if (u.empty() || u == "KEEP") return std::nullopt;
  check(u == "F32" || u == "BF16" || u == "F16", "--dtype '", s,
        "' is not one of keep, F32, BF16, F16");
  return dtype_from_name(u);
}

std::string retag_config_dtype(const std::string& text, std::optional<DType> out,
                               std::vector<std::string>& notes) {
  if (!out) return text;
  const char* torch_name = *out == DType::F32    ? "float32"
                           : *out == DType::BF16 ? "bfloat16"
                                                 : "float16";
  auto j = nlohmann::ordered_json::parse(text);  // keeps the key order of the original
  bool changed = false;
  for (const char* key : {"torch_dtype", "dtype"}) {
    if (j.contains(key) && j[key] != torch_name) {
      notes.push_back(std::string("config.json: ") + key + " " + j[key].dump() + " -> \"" +
                      torch_name + "\" (the tensors were converted)");
      j[key] = torch_name;
      changed = true;
    }
  }
  return changed ? j.dump(2) + "\n" : text;
}

std::string first_names(const std::vector<std::string>& names, size_t few) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < few; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > few) s += " and " + std::to_string(names.size() - few) + " more";
  return s;
}

std::string shape_string(const std::vector<int64_t>& s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
  return o + "]";
}

std::string byte_string(uint64_t n) {
  char buf[64];
  if (n >= 1000000000ull)
    std::snprintf(buf, sizeof buf, "%.2f GB", double(n) / 1e9);
  else if (n >= 1000000ull)
    std::snprintf(buf, sizeof buf, "%.2f MB", double(n) / 1e6);
  else
    std::snprintf(buf, sizeof buf, "%llu bytes", static_cast<unsigned long long>(n));
  return buf;
}

uint64_t parse_byte_size(const std::string& s) {
  size_t pos = 0;
  while (pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos]))) ++pos;
  check(pos > 0, "size '", s,
        "': expected a number of bytes, optionally with a unit (5GB, 500MiB)");
  uint64_t n = std::stoull(s.substr(0, pos));
  std::string unit;
  for (char c : s.substr(pos))
    if (c != ' ') unit += char(std::toupper(static_cast<unsigned char>(c)));
  static const std::pair<const char*, uint64_t> units[] = {{"", 1},
                                                           {"B", 1},
                                                           {"KB", 1000ull},
                                                           {"MB", 1000000ull},
                                                           {"GB", 1000000000ull},
                                                           {"TB", 1000000000000ull},
                                                           {"KIB", 1ull << 10},
                                                           {"MIB", 1ull << 20},
                                                           {"GIB", 1ull << 30},
                                                           {"TIB", 1ull << 40}};
  for (auto& [name, mult] : units)
    if (unit == name) {
      uint64_t v;
      check(!__builtin_mul_overflow(n, mult, &v), "size '", s, "' is too large");
      check(v > 0, "size '", s, "' must be positive");
      return v;
    }
  fail("size '", s, "': unknown unit (use B, KB, MB, GB, TB or KiB, MiB, GiB, TiB)");
}

}  // namespace autotp
