#pragma once
// Shared by the tests: what an autotp::Error said, and substring checks on it.
#include <string>

#include "core/error.hpp"

// The message of the autotp::Error that f() throws, or "" when it does not throw one.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const autotp::Error& e) {
    return e.what();
  }
  return "";
}

inline bool has(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}
