// Pattern matching must be Python's re.match exactly (DeepSpeed calls re.match on each name):
// every case in regex_cases.json was decided by Python (make_regex_cases.py).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "partition/regex_match.hpp"

using namespace autotp;

TEST(PartitionRegex, AgreesWithPythonReMatch) {
  std::ifstream f(AUTOTP_SOURCE_DIR "/tests/fixtures/partition/regex_cases.json");
  ASSERT_TRUE(f) << "missing regex_cases.json";
  auto j = nlohmann::json::parse(f);
  const auto& cases = j["cases"];
  ASSERT_GT(cases.size(), 400u);
  int matches = 0;
  for (auto& c : cases) {
    const std::string pattern = c["pattern"].get<std::string>();
    const std::string name = c["name"].get<std::string>();
    const bool expected = c["match"];
    boost::regex re;
    ASSERT_NO_THROW(re = compile_python_regex(pattern)) << pattern;
    EXPECT_EQ(python_re_match(re, name), expected)
        << "re.match(r'" << pattern << "', '" << name << "') is " << expected
        << " in Python; Boost pattern: " << python_regex_to_boost(pattern);
    matches += expected;
  }
  EXPECT_GT(matches, 100);  // the fixture exercises both outcomes
}

TEST(PartitionRegex, TranslatesPythonOnlySyntax) {
  EXPECT_EQ(python_regex_to_boost(R"((?P<layer>\d+)\.(?P=layer))"), R"((?<layer>\d+)\.\k<layer>)");
  EXPECT_EQ(python_regex_to_boost(R"(a\Z)"), R"(a\z)");
  EXPECT_EQ(python_regex_to_boost("a{,2}b{"), "a{0,2}b\\{");
  EXPECT_EQ(python_regex_to_boost(R"([\d.]+$)"), R"([\d.]+(?=\n?\z))");
  EXPECT_EQ(python_regex_to_boost("(?m)a$"), "(?m)a$");  // MULTILINE keeps Boost's $
}

TEST(PartitionRegex, BadPatternsThrow) {
  EXPECT_THROW(compile_python_regex("(unclosed"), boost::regex_error);
  EXPECT_THROW(compile_python_regex("*leading"), boost::regex_error);
  EXPECT_THROW(compile_python_regex("[a-"), boost::regex_error);
}
