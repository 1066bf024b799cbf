// File: src/core/json_writer.h (internal)
//
// A small JSON writer for the core layer, which has no JSON library: degraded answers and
// workflow outcomes are rendered with it. Values are appended in order; the caller keeps the
// nesting right (begin/end pairs), and strings are escaped per RFC 8259.
//
//   JsonWriter w;
//   w.begin_object().key("status").string("degraded").key("lines").number(3).end_object();
//   std::string text = std::move(w).str();
//
// Thread-safety: a value; one writer per thread.
#ifndef MEND_SRC_CORE_JSON_WRITER_H_
#define MEND_SRC_CORE_JSON_WRITER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace mend::detail {

// Appends `text` as a quoted, escaped JSON string. Bytes that are not valid UTF-8 become U+FFFD,
// so that the output is always valid JSON whatever an agent sent.
void append_json_string(std::string& out, std::string_view text);

class JsonWriter {
 public:
  JsonWriter& begin_object();
  JsonWriter& end_object();
  JsonWriter& begin_array();
  JsonWriter& end_array();
  JsonWriter& key(std::string_view name);
  JsonWriter& string(std::string_view value);
  JsonWriter& number(std::int64_t value);
  JsonWriter& number(double value);
  // Any other integer type, without an ambiguous overload.
  template <class I>
  requires(std::is_integral_v<I> && !std::is_same_v<I, bool> &&
           !std::is_same_v<I, std::int64_t>) JsonWriter& number(I value) {
    return number(static_cast<std::int64_t>(value));
  }
  JsonWriter& boolean(bool value);
  JsonWriter& null();
  // Inserts already-serialized JSON (an agent's answer) as a value. The caller vouches for it.
  JsonWriter& raw(std::string_view json);
  JsonWriter& string_array(const std::vector<std::string>& values);

  const std::string& str() const& { return out_; }
  std::string str() && { return std::move(out_); }

 private:
  void separate();
  std::string out_;
  bool need_comma_ = false;
};

}  // namespace mend::detail

#endif  // MEND_SRC_CORE_JSON_WRITER_H_
