#include "mend/core/env.h"

namespace mend {

const Classifier& standard_classifier() {
  static const Classifier classifier = Classifier::standard();
  return classifier;
}

}  // namespace mend
