#include "partition/regex_match.hpp"

#include <cctype>

namespace autotp {

namespace {

bool is_hex(const std::string& s, size_t from, size_t count) {
  if (from + count > s.size()) return false;
  for (size_t k = from; k < from + count; ++k)
    if (!std::isxdigit(static_cast<unsigned char>(s[k]))) return false;
  return true;
}

// Python's sre_parse reads "{" as a repeat only in the forms {m} {m,} {,n} {m,n} {,};
// otherwise it is a literal. Returns the Boost spelling of a repeat and advances i past it,
// or "" when the brace is a literal.
std::string python_repeat(const std::string& p, size_t& i) {
  size_t j = i + 1;
  std::string lo, hi;
  while (j < p.size() && std::isdigit(static_cast<unsigned char>(p[j]))) lo += p[j++];
  bool comma = j < p.size() && p[j] == ',';
  if (comma) {
    ++j;
    while (j < p.size() && std::isdigit(static_cast<unsigned char>(p[j]))) hi += p[j++];
  }
  if (j >= p.size() || p[j] != '}' || (lo.empty() && !comma)) return "";
  i = j + 1;
  return "{" + (lo.empty() ? std::string("0") : lo) + (comma ? "," + hi : std::string()) + "}";
}

// A leading global flag group such as (?im) turns on Python's MULTILINE, where "$" keeps its
// Boost meaning (end of any line).
bool leading_multiline_flag(const std::string& p) {
  if (p.compare(0, 2, "(?") != 0) return false;
  for (size_t k = 2; k < p.size() && p[k] != ')'; ++k) {
    if (p[k] == 'm') return true;
    if (!std::isalpha(static_cast<unsigned char>(p[k]))) return false;
  }
  return false;
}

}  // namespace

std::string python_regex_to_boost(const std::string& p) {
  const bool multiline = leading_multiline_flag(p);
  std::string out;
  bool in_class = false;
  size_t i = 0;
  while (i < p.size()) {
    char c = p[i];
    if (c == '\\') {
      if (i + 1 >= p.size()) {  // a trailing backslash: let Boost report it
        out += c;
        ++i;
        continue;
      }
      char e = p[i + 1];
      if (e == 'Z' && !in_class) {
        out += "\\z";  // Python's \Z is the very end; Boost's also matches before a final \n
      } else if (e == 'u' && is_hex(p, i + 2, 4)) {
        out += "\\x{" + p.substr(i + 2, 4) + "}";
        i += 4;
      } else if (e == 'U' && is_hex(p, i + 2, 8)) {
        out += "\\x{" + p.substr(i + 2, 8) + "}";
        i += 8;
      } else if (e == '<' || e == '>' || e == '`' || e == '\'') {
        out += e;  // literals in Python; Boost reads \< \> \` \' as word and text boundaries
      } else {
        out += c;
        out += e;
      }
      i += 2;
      continue;
    }
    if (in_class) {
      if (c == '[') {
        out += "\\[";
      } else {
        if (c == ']') in_class = false;
        out += c;
      }
      ++i;
      continue;
    }
    if (c == '[') {
      in_class = true;
      out += c;
      ++i;
      if (i < p.size() && p[i] == '^') out += p[i++];
      if (i < p.size() && p[i] == ']') {  // a leading ']' is a member, in both dialects
        out += "\\]";
        ++i;
      }
      continue;
    }
    if (c == '(' && p.compare(i, 4, "(?P<") == 0) {
      out += "(?<";
      i += 4;
      continue;
    }
    if (c == '(' && p.compare(i, 4, "(?P=") == 0) {
      size_t close = p.find(')', i);
      if (close != std::string::npos) {
        out += "\\k<" + p.substr(i + 4, close - i - 4) + ">";
        i = close + 1;
        continue;
      }
    }
    if (c == '{') {
      std::string rep = python_repeat(p, i);
      if (rep.empty()) {
        out += "\\{";
        ++i;
      } else {
        out += rep;
      }
      continue;
    }
    if (c == '}') {
      out += "\\}";
      ++i;
      continue;
    }
    if (c == '$' && !multiline) {
      out += "(?=\\n?\\z)";  // Python: the end, or just before a final newline
      ++i;
      continue;
    }
    out += c;
    ++i;
  }
  return out;
}

boost::regex compile_python_regex(const std::string& pattern) {
  // no_mod_s: '.' does not match a newline; no_mod_m: '^' is the start of the text only.
  // Inline (?s) and (?m) still switch them on, as in Python.
  return boost::regex(python_regex_to_boost(pattern),
                      boost::regex::perl | boost::regex::no_mod_s | boost::regex::no_mod_m);
}

bool python_re_match(const boost::regex& re, const std::string& text) {
  return boost::regex_search(text, re, boost::match_continuous);
}

}  // namespace autotp
