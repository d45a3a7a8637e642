package devstack

import (
	"context"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	namespacepb "go.temporal.io/api/namespace/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/gauntlet-ml/gauntlet/internal/tclient"
	"google.golang.org/protobuf/types/known/durationpb"
)

// reconcileNamespace makes an existing database match the options: a file
// created by an older Gauntlet may lack a search attribute added since, and
// pre-registration only happens for namespaces that do not exist yet.
func (s *Stack) reconcileNamespace(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := client.DialContext(ctx, client.Options{HostPort: s.opts.FrontendAddr, Namespace: s.opts.Namespace, Logger: tclient.Discard()})
	if err != nil {
		return fmt.Errorf("devstack: frontend %s did not answer: %w", s.opts.FrontendAddr, err)
	}
	defer c.Close()
	desc, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: s.opts.Namespace})
	if err != nil {
		return fmt.Errorf("devstack: describe namespace %s: %w", s.opts.Namespace, err)
	}
	if desc.GetConfig().GetWorkflowExecutionRetentionTtl().AsDuration() != s.opts.Retention {
		_, err := c.WorkflowService().UpdateNamespace(ctx, &workflowservice.UpdateNamespaceRequest{
			Namespace: s.opts.Namespace,
			Config:    &namespacepb.NamespaceConfig{WorkflowExecutionRetentionTtl: durationpb.New(s.opts.Retention)},
		})
		if err != nil {
			return fmt.Errorf("devstack: set retention of namespace %s: %w", s.opts.Namespace, err)
		}
	}
	if len(s.opts.SearchAttributes) == 0 {
		return nil
	}
	have, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: s.opts.Namespace})
	if err != nil {
		return fmt.Errorf("devstack: list search attributes: %w", err)
	}
	missing := map[string]enumspb.IndexedValueType{}
	for name, typ := range s.opts.SearchAttributes {
		if _, ok := have.GetCustomAttributes()[name]; !ok {
			missing[name] = typ
		}
	}
	if len(missing) == 0 {
		return nil
	}
	_, err = c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{Namespace: s.opts.Namespace, SearchAttributes: missing})
	if err != nil {
		return fmt.Errorf("devstack: add search attributes: %w", err)
	}
	return nil
}
