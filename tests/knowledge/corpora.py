"""Two small labelled corpora (Portuguese and English) and questions naming the document that answers them."""

from __future__ import annotations

PORTUGUESE = {
    "troca": "Trocas e devoluções: o cliente pode devolver o produto em até 7 dias após o recebimento, "
             "sem custo, desde que esteja na embalagem original.",
    "frete": "Frete grátis para compras acima de R$ 200 em todo o Brasil. Abaixo desse valor o frete é "
             "calculado pelo CEP no carrinho.",
    "prazo-entrega": "O prazo de entrega é de 3 a 5 dias úteis para capitais e até 10 dias úteis para o interior.",
    "pagamento": "Aceitamos cartão de crédito em até 12 parcelas sem juros, Pix com 5% de desconto e boleto bancário.",
    "planos": "O plano Básico custa R$ 49 por mês e o plano Premium custa R$ 99 por mês, com suporte prioritário.",
    "cancelamento": "A assinatura pode ser cancelada a qualquer momento pelo aplicativo, sem multa.",
    "senha": "Para recuperar a senha, clique em 'Esqueci minha senha' na tela de login e siga as instruções "
             "enviadas por e-mail.",
    "garantia": "Todos os eletrônicos têm garantia de um ano contra defeitos de fabricação.",
    "horario": "O atendimento funciona de segunda a sexta, das 8h às 18h, e aos sábados das 9h às 13h.",
    "nota-fiscal": "A nota fiscal é enviada por e-mail assim que o pedido é faturado.",
    "lojas": "Temos lojas físicas em São Paulo, Rio de Janeiro e Belo Horizonte.",
    "cupom": "Cupons de desconto não são cumulativos e valem apenas para a primeira compra.",
}
PORTUGUESE_QUESTIONS = {
    "Posso devolver um produto?": "troca",
    "quanto custa o frete?": "frete",
    "Em quantos dias a encomenda chega? Qual o prazo de entrega": "prazo-entrega",
    "vocês aceitam pix ou boleto?": "pagamento",
    "Qual o preço do plano premium?": "planos",
    "como cancelo minha assinatura": "cancelamento",
    "esqueci a senha": "senha",
    "qual a garantia dos eletronicos": "garantia",
    "horário de atendimento aos sábados": "horario",
    "onde ficam as lojas fisicas": "lojas",
    "cupom de desconto": "cupom",
    "notas fiscais": "nota-fiscal",
}

ENGLISH = {
    "returns": "Returns: you may return any item within 30 days of delivery for a full refund.",
    "shipping": "Standard shipping takes 3 to 5 business days; express shipping arrives the next day.",
    "pricing": "The Starter plan costs $10 per month and the Business plan costs $45 per month per seat.",
    "password": "To reset your password, open Settings, choose Security and click Reset password.",
    "warranty": "All devices come with a two-year limited warranty covering manufacturing defects.",
    "hours": "Our support team is available Monday through Friday, 9am to 6pm Eastern Time.",
    "cancel": "You can cancel your subscription at any time from the Billing page; no fees apply.",
    "invoice": "Invoices are emailed on the first day of each month and can be downloaded from Billing.",
    "privacy": "We never sell personal data. Read our privacy policy for details on cookies and tracking.",
    "api": "The REST API is rate limited to 100 requests per minute per API key.",
    "stores": "Visit our stores in London, Berlin and New York.",
    "gift-cards": "Gift cards never expire and can be used for any purchase online.",
}
ENGLISH_QUESTIONS = {
    "How do I return an item?": "returns",
    "how long does shipping take": "shipping",
    "What does the Business plan cost?": "pricing",
    "I forgot my password, how can I reset it": "password",
    "is there a warranty on devices": "warranty",
    "when is support available": "hours",
    "cancelling a subscription": "cancel",
    "where can I download my invoice": "invoice",
    "do you sell my data": "privacy",
    "API rate limits": "api",
    "store locations": "stores",
    "do gift cards expire?": "gift-cards",
}
