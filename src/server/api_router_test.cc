// The API's router on its own: which handler a method and path reach, the parameters it is
// handed, 405 with Allow when the path exists under other methods, HEAD as GET, and no answer at
// all (for the daemon's 404) when no route has the path. No sockets.
#include "api_router.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "recording_responder.h"

namespace mend::server_detail {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

struct ApiRouterTest : ::testing::Test {
  ApiRouterTest() {
    router.add("GET", "/v1/tasks", [this](const Route&) { calls.push_back("list"); });
    router.add("POST", "/v1/tasks", [this](const Route&) { calls.push_back("submit"); });
    router.add("GET", "/v1/tasks/{id}",
               [this](const Route& r) { calls.push_back("show " + r.params[0]); });
    router.add("POST", "/v1/agents/{agent}/circuit", [this](const Route& r) {
      calls.push_back("circuit " + r.params[0] + " " + r.target.query.at("state"));
    });
    router.add("POST", "/v1/tickets/{id}/acknowledge",
               [this](const Route& r) { calls.push_back("ack " + r.params[0]); });
    router.add("PUT", "/v1/tasks", [this](const Route&) { calls.push_back("put"); });
  }

  // Dispatches `method target`; the answer, if the router gave one.
  bool send(const std::string& method, const std::string& target) {
    HttpRequest request;
    request.method = method;
    request.target = target;
    responder = std::make_shared<RecordingResponder>();
    std::shared_ptr<HttpResponder> as_responder = responder;
    return router.dispatch(request, parse_target(target), as_responder);
  }

  ApiRouter router;
  std::vector<std::string> calls;
  std::shared_ptr<RecordingResponder> responder;
};

TEST_F(ApiRouterTest, AMethodAndPathReachTheirHandlerWithTheParameters) {
  EXPECT_TRUE(send("GET", "/v1/tasks"));
  EXPECT_TRUE(send("POST", "/v1/tasks"));
  EXPECT_TRUE(send("GET", "/v1/tasks/t-42?wait=5"));
  EXPECT_TRUE(send("POST", "/v1/agents/code%20reviewer/circuit?state=open"));
  EXPECT_TRUE(send("POST", "/v1/tickets/TKT-3/acknowledge"));
  EXPECT_THAT(
      calls, ElementsAre("list", "submit", "show t-42", "circuit code reviewer open", "ack TKT-3"));
  EXPECT_TRUE(responder->answers.empty());  // the handlers answer, not the router
}

TEST_F(ApiRouterTest, HeadIsAnsweredAsGet) {
  EXPECT_TRUE(send("HEAD", "/v1/tasks/t-1"));
  EXPECT_THAT(calls, ElementsAre("show t-1"));
}

TEST_F(ApiRouterTest, APathUnderAnotherMethodIsA405ListingTheMethodsItHas) {
  EXPECT_TRUE(send("DELETE", "/v1/tasks"));
  ASSERT_EQ(responder->answers.size(), 1u);
  const HttpResponse& r = responder->answers[0];
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.header("Allow"), "GET, POST, PUT");  // in the order the routes were added
  EXPECT_THAT(r.body, HasSubstr("DELETE is not allowed on /v1/tasks (allowed: GET, POST, PUT)"));

  EXPECT_TRUE(send("GET", "/v1/agents/reviewer/circuit"));
  EXPECT_EQ(responder->answers.at(0).header("Allow"), "POST");
  EXPECT_TRUE(calls.empty());
}

TEST_F(ApiRouterTest, APathNoRouteHasIsLeftUnanswered) {
  for (const char* target : {"/", "/v1", "/v2/tasks", "/v1/tasks/t-1/extra", "/v1/agents/x",
                             "/v1/tickets/TKT-1/reopen", "/v1/tasks%2Ft-1"}) {
    EXPECT_FALSE(send("GET", target)) << target;
    EXPECT_TRUE(responder->answers.empty()) << target;
  }
  EXPECT_TRUE(calls.empty());
}

TEST_F(ApiRouterTest, AParameterMatchesOneSegmentAndALiteralOnlyItself) {
  // "tasks" as an id is an id: the literal route with two segments does not take it.
  EXPECT_TRUE(send("GET", "/v1/tasks/tasks"));
  EXPECT_THAT(calls, ElementsAre("show tasks"));
  // The literal "circuit" is not a parameter.
  EXPECT_FALSE(send("POST", "/v1/agents/reviewer/restart"));
}

}  // namespace
}  // namespace mend::server_detail
