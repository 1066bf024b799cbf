// The API's routes, as a part of their own: which handler answers a method on a path, with the
// answers HTTP asks for when none does (405 with an Allow header listing the path's methods).
// Handlers are plain functions the daemon registers; the router knows nothing of the daemon.
//
//   ApiRouter router;
//   router.add("GET", "/v1/tasks/{id}", [&](const Route& r) { show(r.params[0], r.responder); });
//   router.add("POST", "/v1/tasks", submit);
//   if (!router.dispatch(request, responder)) answer_404();
//
// A pattern is a path of segments: a literal matches itself, "{name}" matches any one segment
// (percent-decoded; its value goes to Route::params, in order). HEAD is answered as GET.
//
// Thread-safety: add() before the router is shared; dispatch() is const and safe from any
// thread, as safe as the handlers it calls.
#ifndef MEND_SERVER_API_ROUTER_H_
#define MEND_SERVER_API_ROUTER_H_

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "api_codec.h"
#include "mend/runtime/http_server.h"

namespace mend::server_detail {

// What a handler is handed.
struct Route {
  const HttpRequest& request;
  const Target& target;
  const std::vector<std::string>& params;  // the "{...}" segments' values, in pattern order
  const std::shared_ptr<HttpResponder>& responder;
};
using RouteHandler = std::function<void(const Route&)>;

class ApiRouter {
 public:
  // `method`: "GET" (which answers HEAD too), "POST", ...; `pattern`: "/v1/tasks/{id}".
  void add(std::string method, std::string_view pattern, RouteHandler handler);

  // Calls the handler of the first route whose pattern and method match; when patterns match
  // but none with this method, answers 405 with Allow (the methods those patterns have, in the
  // order they were added). False, and nothing answered, when no pattern matches the path.
  bool dispatch(const HttpRequest& request, const Target& target,
                const std::shared_ptr<HttpResponder>& responder) const;

 private:
  struct Entry {
    std::string method;
    std::vector<std::string> segments;  // "{...}" marks a parameter
    RouteHandler handler;
  };
  static bool matches(const Entry& entry, const std::vector<std::string>& path,
                      std::vector<std::string>* params);
  std::vector<Entry> routes_;
};

}  // namespace mend::server_detail

#endif  // MEND_SERVER_API_ROUTER_H_
