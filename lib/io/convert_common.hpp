#pragma once
// Pieces shared by the two conversion directions (internal to lib/io).
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.hpp"

namespace autotp {

// "" or "keep" -> nullopt (keep each tensor's dtype); "F32" / "BF16" / "F16" (any case).
std::optional<DType> parse_out_dtype(const std::string& s);
// config.json text with torch_dtype / dtype set to the converted dtype (the text is returned
// unchanged when no conversion is asked for or the tag already agrees); a note goes to `notes`.
std::string retag_config_dtype(const std::string& text, std::optional<DType> out,
                               std::vector<std::string>& notes);
// "a, b, c and 4 more": the first few names of a long list, for error messages.
std::string first_names(const std::vector<std::string>& names, size_t few = 5);
std::string shape_string(const std::vector<int64_t>& s);  // "[64, 32]"
std::string byte_string(uint64_t n);                      // "1.5 MB (1500000 bytes)"

}  // namespace autotp
