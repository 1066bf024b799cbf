#include "api_router.h"

#include <algorithm>
#include <utility>

namespace mend::server_detail {

namespace {

bool is_parameter(std::string_view segment) {
  return segment.size() >= 2 && segment.front() == '{' && segment.back() == '}';
}

std::vector<std::string> split_pattern(std::string_view pattern) {
  std::vector<std::string> segments;
  while (!pattern.empty()) {
    if (pattern.front() == '/') {
      pattern.remove_prefix(1);
      continue;
    }
    const std::size_t end = std::min(pattern.find('/'), pattern.size());
    segments.emplace_back(pattern.substr(0, end));
    pattern.remove_prefix(end);
  }
  return segments;
}

}  // namespace

void ApiRouter::add(std::string method, std::string_view pattern, RouteHandler handler) {
  routes_.push_back({std::move(method), split_pattern(pattern), std::move(handler)});
}

bool ApiRouter::matches(const Entry& entry, const std::vector<std::string>& path,
                        std::vector<std::string>* params) {
  if (entry.segments.size() != path.size()) return false;
  params->clear();
  for (std::size_t i = 0; i < path.size(); ++i) {
    if (is_parameter(entry.segments[i])) {
      params->push_back(path[i]);
    } else if (entry.segments[i] != path[i]) {
      return false;
    }
  }
  return true;
}

bool ApiRouter::dispatch(const HttpRequest& request, const Target& target,
                         const std::shared_ptr<HttpResponder>& responder) const {
  const std::string& method = request.method == "HEAD" ? std::string("GET") : request.method;
  std::vector<std::string> params;
  std::vector<std::string_view> methods;  // of the patterns that match the path
  for (const Entry& entry : routes_) {
    if (!matches(entry, target.segments, &params)) continue;
    if (entry.method == method) {
      entry.handler(Route{request, target, params, responder});
      return true;
    }
    if (std::find(methods.begin(), methods.end(), entry.method) == methods.end()) {
      methods.push_back(entry.method);
    }
  }
  if (methods.empty()) return false;
  std::string allowed;
  for (std::string_view m : methods) {
    if (!allowed.empty()) allowed += ", ";
    allowed += m;
  }
  HttpResponse r = error_response(
      405, ErrorType::validation_failed,
      request.method + " is not allowed on " + target.path + " (allowed: " + allowed + ")");
  r.headers.push_back({"Allow", allowed});
  responder->respond(std::move(r));
  return true;
}

}  // namespace mend::server_detail
