#pragma once
// Python's re.match on Boost.Regex. DeepSpeed matches layer_specs patterns with re.match:
// anchored at the start of the name but not at its end, so ".*\.o_proj" also matches
// "x.o_proj_extra.weight" unless the pattern ends with "$".
#include <boost/regex.hpp>
#include <string>

namespace autotp {

// Rewrites the parts of Python's syntax that Boost's perl syntax spells differently or reads
// differently: (?P<name>...) and (?P=name) groups, \Z (end of text), \uXXXX and \UXXXXXXXX,
// a '{' that does not start a repeat (a literal in Python), {,n}, '[' inside a class (a literal
// in Python, a POSIX class opener in Boost), and \< \> (literals in Python, word boundaries in
// Boost).
std::string python_regex_to_boost(const std::string& pattern);

// Compiles a Python pattern; throws boost::regex_error on a pattern that does not compile.
boost::regex compile_python_regex(const std::string& pattern);

// re.match(pattern, text) is not None.
bool python_re_match(const boost::regex& re, const std::string& text);

}  // namespace autotp
