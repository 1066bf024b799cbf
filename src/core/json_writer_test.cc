#include "json_writer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

namespace mend::detail {
namespace {

std::string json_quoted(std::string_view text) {
  std::string out;
  append_json_string(out, text);
  return out;
}

TEST(JsonString, EscapesQuotesAndBackslashes) {
  EXPECT_EQ(json_quoted("say \"hi\" \\ bye"), R"("say \"hi\" \\ bye")");
  EXPECT_EQ(nlohmann::json::parse(json_quoted("a\"b\\c")).get<std::string>(), "a\"b\\c");
}

TEST(JsonString, EscapesControlCharacters) {
  EXPECT_EQ(json_quoted("\n\r\t"), R"("\n\r\t")");
  EXPECT_EQ(json_quoted(std::string("\x01\x1f\b\f", 4)), R"("\u0001\u001f\u0008\u000c")");
  EXPECT_EQ(json_quoted(std::string("a\0b", 3)), R"("a\u0000b")");
  const std::string all_controls = [] {
    std::string s;
    for (char c = 0; c < 0x20; ++c) s.push_back(c);
    return s;
  }();
  EXPECT_EQ(nlohmann::json::parse(json_quoted(all_controls)).get<std::string>(), all_controls);
  EXPECT_EQ(json_quoted("\x7f"), "\"\x7f\"");  // DEL is not a control character for JSON
}

TEST(JsonString, KeepsValidUtf8) {
  const std::string text = "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80";  // é € 😀
  EXPECT_EQ(json_quoted(text), "\"" + text + "\"");
  EXPECT_EQ(nlohmann::json::parse(json_quoted(text)).get<std::string>(), text);
}

TEST(JsonString, ReplacesInvalidUtf8WithReplacementCharacter) {
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(json_quoted("a\xFF"
                        "b"),
            "\"a" + fffd + "b\"");                                // not a lead byte
  EXPECT_EQ(json_quoted("\x80"), "\"" + fffd + "\"");             // lone continuation byte
  EXPECT_EQ(json_quoted("\xC3"), "\"" + fffd + "\"");             // truncated sequence
  EXPECT_EQ(json_quoted("\xC0\xAF"), "\"" + fffd + fffd + "\"");  // overlong '/'
  EXPECT_EQ(json_quoted("\xED\xA0\x80"), "\"" + fffd + fffd + fffd + "\"");  // surrogate D800
  EXPECT_EQ(json_quoted("\xF4\x90\x80\x80"),
            "\"" + fffd + fffd + fffd + fffd + "\"");  // > U+10FFFF
  // Whatever bytes come in, the output parses.
  std::string every_byte;
  for (int b = 0; b < 256; ++b) every_byte.push_back(static_cast<char>(b));
  EXPECT_TRUE(nlohmann::json::accept(json_quoted(every_byte)));
}

TEST(JsonWriter, WritesNestedValuesWithCommas) {
  JsonWriter w;
  w.begin_object()
      .key("s")
      .string("x")
      .key("i")
      .number(std::int64_t{-3})
      .key("d")
      .number(1.5)
      .key("b")
      .boolean(false)
      .key("n")
      .null()
      .key("a")
      .string_array({"p", "q"})
      .key("e")
      .begin_array()
      .end_array()
      .key("o")
      .begin_object()
      .key("k")
      .begin_array()
      .number(std::int64_t{1})
      .number(std::int64_t{2})
      .end_array()
      .end_object()
      .key("r")
      .raw(R"({"agent":true})")
      .end_object();
  const std::string text = w.str();
  EXPECT_EQ(text, R"({"s":"x","i":-3,"d":1.5,"b":false,"n":null,"a":["p","q"],"e":[],)"
                  R"("o":{"k":[1,2]},"r":{"agent":true}})");
  const auto j = nlohmann::json::parse(text);
  EXPECT_EQ(j["o"]["k"][1], 2);
  EXPECT_TRUE(j["r"]["agent"].get<bool>());
}

TEST(JsonWriter, NonFiniteNumbersBecomeNull) {
  JsonWriter w;
  w.begin_array()
      .number(std::numeric_limits<double>::quiet_NaN())
      .number(std::numeric_limits<double>::infinity())
      .number(-std::numeric_limits<double>::infinity())
      .end_array();
  EXPECT_EQ(w.str(), "[null,null,null]");
}

TEST(JsonWriter, DoublesRoundTripClosely) {
  JsonWriter w;
  w.begin_array().number(0.1).number(-2.5e-300).number(1e300).number(0.0).end_array();
  const auto j = nlohmann::json::parse(w.str());
  EXPECT_DOUBLE_EQ(j[0].get<double>(), 0.1);
  EXPECT_DOUBLE_EQ(j[1].get<double>(), -2.5e-300);
  EXPECT_DOUBLE_EQ(j[2].get<double>(), 1e300);
  EXPECT_EQ(j[3].get<double>(), 0.0);
}

TEST(JsonWriter, Int64Extremes) {
  JsonWriter w;
  w.begin_array()
      .number(std::numeric_limits<std::int64_t>::min())
      .number(std::numeric_limits<std::int64_t>::max())
      .end_array();
  const auto j = nlohmann::json::parse(w.str());
  EXPECT_EQ(j[0].get<std::int64_t>(), std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(j[1].get<std::int64_t>(), std::numeric_limits<std::int64_t>::max());
}

TEST(JsonWriter, KeysAreEscapedToo) {
  JsonWriter w;
  w.begin_object().key("we\"ird\n\xFF").string("v").end_object();
  const auto j = nlohmann::json::parse(w.str());
  EXPECT_EQ(j.begin().key(), "we\"ird\n\xEF\xBF\xBD");
}

TEST(JsonWriter, MovesTheTextOut) {
  JsonWriter w;
  w.begin_object().key("k").string("v").end_object();
  std::string text = std::move(w).str();
  EXPECT_EQ(text, R"({"k":"v"})");
}

}  // namespace
}  // namespace mend::detail
