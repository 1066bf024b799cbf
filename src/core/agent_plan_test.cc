// The agent registry: the plan of agents a task may go to (primary, chain, capability,
// generalist, without repeats), and the agents it refuses.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "mend/core/agents.h"

namespace mend {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(AgentPlanTest, PrimaryChainCapabilityGeneralistWithoutRepeats) {
  AgentRegistry agents;
  ASSERT_TRUE(agents.add({.name = "senior-frontend-developer", .capabilities = {"ui"}}).ok());
  ASSERT_TRUE(agents.add({.name = "designer", .capabilities = {"ui"}}).ok());
  ASSERT_TRUE(agents.add({.name = "agentzero-coordinator", .generalist = true}).ok());
  ASSERT_TRUE(agents.add({.name = "helper", .generalist = true}).ok());
  agents.set_chains(default_fallback_chains());
  std::vector<std::string> order;
  std::vector<CandidateRole> roles;
  for (const Candidate& c : agents.plan("senior-frontend-developer", {})) {
    order.push_back(c.agent);
    roles.push_back(c.role);
  }
  EXPECT_THAT(order, ElementsAre("senior-frontend-developer", "senior-full-stack-developer",
                                 "code-generation-improver", "agentzero-coordinator", "designer",
                                 "helper"));
  EXPECT_EQ(roles[4], CandidateRole::capability);
  EXPECT_EQ(roles[5], CandidateRole::generalist);
  EXPECT_EQ(agents.unavailable_reason("code-generation-improver"), SkipReason::unknown_agent);
}

TEST(AgentPlanTest, RegistryRejectsBadAgents) {
  AgentRegistry agents;
  EXPECT_FALSE(agents.add({.name = ""}).ok());
  ASSERT_TRUE(agents.add({.name = "a"}).ok());
  Result<void> dup = agents.add({.name = "a"});
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().type, ErrorType::configuration_error);
  EXPECT_THAT(dup.error().message, HasSubstr("twice"));
  AgentInfo bad{.name = "b"};
  bad.breaker.failure_threshold = 0;
  EXPECT_FALSE(agents.add(bad).ok());
  EXPECT_EQ(agents.size(), 1u);
}

}  // namespace
}  // namespace mend
